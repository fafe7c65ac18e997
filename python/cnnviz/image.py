"""cnnviz.image (to be filled)."""
__all__: list = []
