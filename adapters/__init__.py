"""Built-in adapters. Each registers through the ``mixerhub`` entry-point group, as a
third-party adapter package would."""
