"""The Textual console (a later issue)."""
