"""Media: files and voice, in from the platforms and out to them."""
