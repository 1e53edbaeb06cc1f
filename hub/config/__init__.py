"""Policy configuration: Istio-format YAML files → validated documents → snapshots."""
