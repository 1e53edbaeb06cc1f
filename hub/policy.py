"""The seam between the wire services and whatever decides checks and consumes reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from mixerhub.attributes.bag import AttributeBag
from mixerhub.verdict import CheckOutcome, QuotaGrant, QuotaRequest, Verdict


class Policy(Protocol):
    """Decides checks and takes reports. The wire services call only this."""

    async def check(
        self, bag: AttributeBag, quotas: Mapping[str, QuotaRequest], dedup_id: str
    ) -> CheckOutcome:
        """Decide one check; references come from the lookups made on ``bag``."""
        ...

    async def report(self, bags: Sequence[AttributeBag]) -> None:
        """Take a batch of report bags; must not block on slow backends."""
        ...

    async def allocate(self, bag: AttributeBag, quotas: Mapping[str, QuotaRequest],
                       dedup_id: str) -> dict[str, QuotaGrant]:
        """Allocate quotas alone, without the preconditions (Envoy's rate-limit service)."""
        ...

    def default_quotas(self, bag: AttributeBag) -> dict[str, QuotaRequest]:
        """The quotas to charge a caller that names none (Envoy ext_authz, ``/v1/check``
        without ``quotas``): 1 unit of each quota the QuotaSpecs bound to the destination
        service name, or, with no QuotaSpec at all, of each quota whose rule matches
        (DESIGN §5). Lookups are recorded on ``bag``."""
        ...


class AllowAll:
    """The policy of a hub with no rules: every check OK (60 s / 10,000 uses), every
    quota granted in full (as Mixer did for quotas no rule handles), reports dropped
    after being counted by the caller."""

    async def check(
        self, bag: AttributeBag, quotas: Mapping[str, QuotaRequest], dedup_id: str
    ) -> CheckOutcome:
        grants = {name: QuotaGrant(granted_amount=q.amount) for name, q in quotas.items()}
        return CheckOutcome(Verdict(), grants)

    async def report(self, bags: Sequence[AttributeBag]) -> None:
        return None

    async def allocate(self, bag: AttributeBag, quotas: Mapping[str, QuotaRequest],
                       dedup_id: str) -> dict[str, QuotaGrant]:
        return {name: QuotaGrant(granted_amount=q.amount) for name, q in quotas.items()}

    def default_quotas(self, bag: AttributeBag) -> dict[str, QuotaRequest]:
        return {}
