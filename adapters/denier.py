"""``denier``: answers every check with one configured status.

Params keep Istio 1.4's names (``status``, ``validDuration``, ``validUseCount``) so a Mixer
handler loads unchanged. The answer is computed once, at construction: a check does no work.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from mixerhub import hookimpl
from mixerhub.adapter import (AdapterEnv, BaseAdapter, CheckResult, Params, QuotaArgs,
                              QuotaResult)
from mixerhub.adapters._params import Duration
from mixerhub.plugins import AdapterRegistry

PERMISSION_DENIED = 7


class StatusParams(Params):
    """A ``google.rpc.Status``: the code and message every check receives."""

    code: int = Field(PERMISSION_DENIED, ge=0, le=16,
                      description="google.rpc.Code returned by every check (0 OK, 7 "
                                  "PERMISSION_DENIED, 9 FAILED_PRECONDITION, 16 "
                                  "UNAUTHENTICATED, ...)")
    message: str = Field("", description="Message returned with the code")


class DenierParams(Params):
    status: StatusParams = Field(default_factory=StatusParams,
                                 description="The status returned for every check")
    valid_duration: Duration = Field("5s", alias="validDuration", validate_default=True,
                                     description="How long a caller may reuse the answer")
    valid_use_count: int = Field(1000, ge=0, alias="validUseCount",
                                 description="How many times a caller may reuse the answer")


class DenierAdapter(BaseAdapter):
    """Returns the configured status for checknothing, listentry and authorization
    instances; grants nothing for quota instances (as Mixer's denier did)."""

    name: ClassVar[str] = "denier"
    Params = DenierParams
    templates: ClassVar[frozenset[str]] = frozenset(
        {"checknothing", "listentry", "authorization", "quota"})

    def __init__(self, params: DenierParams, env: AdapterEnv) -> None:
        super().__init__(params, env)
        self._result = CheckResult(code=params.status.code, message=params.status.message,
                                   valid_duration=params.valid_duration,
                                   valid_use_count=params.valid_use_count)

    async def check(self, instance: Any) -> CheckResult:
        return self._result

    async def quota(self, instance: Any, args: QuotaArgs) -> QuotaResult:
        # A denier in a quota rule refuses every allocation; the hub turns a short grant
        # into RESOURCE_EXHAUSTED.
        return QuotaResult(granted=0)


@hookimpl
def mixerhub_register_adapters(registry: AdapterRegistry) -> None:
    registry.register(DenierAdapter)
