"""Config models of each channel type (pure pydantic: no platform SDK is imported here)."""
