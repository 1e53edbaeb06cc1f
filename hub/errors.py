"""The hub's error classes. Each has a stable ``code``; one gRPC boundary maps them.

Keep this module small: a new class only for a new way a caller must react.
"""

from __future__ import annotations

import grpc


class MixerhubError(Exception):
    """Base of every error the hub raises on purpose."""

    code = "internal_error"
    grpc_status = grpc.StatusCode.INTERNAL


class WireError(MixerhubError):
    """A request that cannot be decoded: bad protobuf, an index out of range, a bad map."""

    code = "wire_error"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT


class EncodeError(MixerhubError):
    """A value that cannot be put on the wire (unknown type, int out of int64 range)."""

    code = "encode_error"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT


class AttributeJSONError(MixerhubError):
    """Attributes in the JSON form that do not match their declared types."""

    code = "attribute_json_error"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT


class BackendUnavailable(MixerhubError):
    """A backend the answer depends on (Redis, a quota adapter) failed; the caller's own
    failure mode decides (Envoy's rate-limit filter: ``failure_mode_deny``)."""

    code = "backend_unavailable"
    grpc_status = grpc.StatusCode.UNAVAILABLE
