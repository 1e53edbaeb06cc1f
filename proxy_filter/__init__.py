"""The caller's side: the Mixer client and (later) the Python proxy and Envoy config."""
