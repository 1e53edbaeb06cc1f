"""Instance templates: the typed shapes rules build from attributes for adapters."""
