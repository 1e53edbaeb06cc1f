# The ext_authz policy OPA-Envoy serves in bench/compare.py: the same rule as the hub's
# policy in bench/envoy_filters.py (deny requests whose x-user header is "mallory"; allow
# the rest, including requests without the header).
package mixerhub.bench

default allow := false

allow if not mallory

mallory if input.attributes.request.http.headers["x-user"] == "mallory"
