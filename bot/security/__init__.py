"""Security: who may talk to the bot, and keeping secrets out of replies, logs and memory."""
