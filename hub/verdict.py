"""What a check decides: the precondition verdict and quota grants, wire-independent."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum

from mixerhub.attributes.bag import Reference

#: Mixer's verdict lifetime when no handler ran.
DEFAULT_VALID_DURATION = dt.timedelta(seconds=60)
DEFAULT_VALID_USE_COUNT = 10_000


#: DESIGN §5: the HTTP status a denial with this ``google.rpc.Code`` becomes.
_HTTP_STATUS = {0: 200, 1: 499, 3: 400, 4: 504, 5: 404, 7: 403, 8: 429, 9: 400, 11: 400,
                14: 503, 16: 401}


def http_status(code: int) -> int:
    """PERMISSION_DENIED 403, UNAUTHENTICATED 401, RESOURCE_EXHAUSTED 429,
    INVALID_ARGUMENT/FAILED_PRECONDITION/OUT_OF_RANGE 400, NOT_FOUND 404, UNAVAILABLE 503,
    DEADLINE_EXCEEDED 504, CANCELLED 499 (the client went away), others 500."""
    return _HTTP_STATUS.get(code, 500)


class HeaderOperation(enum.IntEnum):
    """Values as on the wire (``HeaderOperation.Operation``)."""

    REPLACE = 0
    REMOVE = 1
    APPEND = 2


@dataclasses.dataclass(frozen=True, slots=True)
class HeaderOp:
    name: str
    value: str = ""
    operation: HeaderOperation = HeaderOperation.REPLACE


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """A precondition verdict. ``code`` is a ``google.rpc.Code`` number (0 = OK)."""

    code: int = 0
    message: str = ""
    valid_duration: dt.timedelta = DEFAULT_VALID_DURATION
    valid_use_count: int = DEFAULT_VALID_USE_COUNT
    references: tuple[Reference, ...] = ()
    request_header_ops: tuple[HeaderOp, ...] = ()
    response_header_ops: tuple[HeaderOp, ...] = ()
    direct_response_code: int = 0
    direct_response_body: str = ""
    rules: tuple[str, ...] = ()  # names of the rules that applied (recorded decisions)

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclasses.dataclass(frozen=True, slots=True)
class QuotaRequest:
    """One quota a caller asks for (``CheckRequest.quotas``)."""

    amount: int
    best_effort: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class QuotaGrant:
    """What one quota allocation gave. ``limit``, ``remaining`` and ``reset`` (time until
    more is available) are known when the adapter says them; they feed Envoy's rate-limit
    replies and the ``x-ratelimit-*``/``retry-after`` headers of a 429."""

    granted_amount: int
    valid_duration: dt.timedelta = dt.timedelta(0)
    code: int = 0
    message: str = ""
    references: tuple[Reference, ...] = ()
    limit: int | None = None
    remaining: int | None = None
    reset: dt.timedelta | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class CheckOutcome:
    verdict: Verdict
    quotas: dict[str, QuotaGrant] = dataclasses.field(default_factory=dict)
