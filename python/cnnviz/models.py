"""cnnviz.models (to be filled)."""
__all__: list = []
