"""Media: what comes with a message (images, documents, voice) and what goes back."""
