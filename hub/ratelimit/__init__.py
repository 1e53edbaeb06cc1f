"""envoyproxy/ratelimit's descriptor configuration, loaded unchanged, and the counters
that serve it (docs/ratelimit.md)."""
