"""The embedded toy world: a synthetic corpus (pure) and the small Llama trained on it (torch)."""
