"""An adapter package written the way any third party would: one class, one hook."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from pydantic import Field

from mixerhub import hookimpl
from mixerhub.adapter import BaseAdapter, CheckResult, Params
from mixerhub.plugins import AdapterRegistry

PERMISSION_DENIED = 7


class PrefixParams(Params):
    prefixes: list[str] = Field(min_length=1, description="allowed prefixes of the value")
    validDuration: float = Field(30.0, description="seconds a verdict may be reused")


class PrefixChecker(BaseAdapter):
    """Allows a listentry value that starts with one of the configured prefixes."""

    name: ClassVar[str] = "prefixchecker"
    Params: ClassVar[type[PrefixParams]] = PrefixParams
    templates: ClassVar[frozenset[str]] = frozenset({"listentry"})

    async def check(self, instance: Any) -> CheckResult:
        value = str(instance.value)
        lifetime = dt.timedelta(seconds=self.params.validDuration)
        if value.startswith(tuple(self.params.prefixes)):
            return CheckResult(valid_duration=lifetime, valid_use_count=1000)
        return CheckResult(PERMISSION_DENIED, f"{value} has no allowed prefix",
                           lifetime, 1000)


@hookimpl
def mixerhub_register_adapters(registry: AdapterRegistry) -> None:
    registry.register(PrefixChecker)
