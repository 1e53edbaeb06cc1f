"""Package data: the global dictionary and attribute manifests (each names its source)."""
