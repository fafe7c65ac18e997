"""The notebook helper module (to be filled)."""
