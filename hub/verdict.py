"""What a check decides: the precondition verdict and quota grants, wire-independent."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum

from mixerhub.attributes.bag import Reference

#: Mixer's verdict lifetime when no handler ran.
DEFAULT_VALID_DURATION = dt.timedelta(seconds=60)
DEFAULT_VALID_USE_COUNT = 10_000


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
    granted_amount: int
    valid_duration: dt.timedelta = dt.timedelta(0)
    code: int = 0
    message: str = ""
    references: tuple[Reference, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class CheckOutcome:
    verdict: Verdict
    quotas: dict[str, QuotaGrant] = dataclasses.field(default_factory=dict)
