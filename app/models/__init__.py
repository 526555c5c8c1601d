"""Model manifest, registry, runtimes (backends) and the bounded runner that feeds them."""
