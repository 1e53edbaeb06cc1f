"""The caller's side: the Mixer client library (check cache, quota prefetch, report
batching, fail policy), the Python proxy, ASGI/WSGI middlewares (docs/proxy.md), and the
Envoy Lua filter (``proxy_filter/envoy``)."""
