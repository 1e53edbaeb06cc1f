"""Envoy's own APIs served by the hub: ext_authz Check, the gRPC access-log service and
the rate-limit service (stubs from the ``xds-protos`` package), plus the bootstrap that
``mixerhub envoy-config`` prints."""
