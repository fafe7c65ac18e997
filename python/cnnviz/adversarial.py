"""cnnviz.adversarial (to be filled)."""
__all__: list = []
