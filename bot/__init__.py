"""Decapod: a self-hosted AI assistant gateway."""

__version__ = "0.1.0"
