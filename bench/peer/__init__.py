"""The peer measured side by side: nanobot-ai, in a throwaway virtual environment of its own.

`ensure_nanobot()` installs it once under ~/.cache/decapod-bench/ (never into the project's
environment); the scripts beside this file run inside that environment (`nb_*.py`), against
the same fake LLM server as Decapod, and print one JSON line each.
"""
