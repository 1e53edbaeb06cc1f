"""``opa``: authorization instances decided by Rego policies.

Istio's params (``policy``, ``checkMethod``, ``failClose``) evaluate the policy in-process
with regopy; with ``url`` a real OPA server decides instead (``policyPath``; the ``policy``
modules, if given, are uploaded to it). ``inputShape: envoy`` builds OPA-Envoy's input so its
policies work unchanged. A verdict depends only on the instance, so the hub may cache it by
the attributes the instance read (``cachingInterval``/``cachingUseCount``).

Embedded policies are compiled and scanned when the config is validated: a syntax error,
or a built-in the embedded engine lacks, is a config error naming it. An engine error or an
unreachable OPA raises :class:`BackendError`; the rule's failPolicy, else ``failClose``,
decides (the ``fail_closed`` attribute).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from mixerhub import hookimpl
from mixerhub.adapter import AdapterEnv, BackendError, BaseAdapter, CheckResult, Params, Status
from mixerhub.adapters import _rego
from mixerhub.adapters._opa_input import authorization_input, envoy_input
from mixerhub.adapters._opa_remote import OpaServer, PolicyRejected, check_url, normalize_path
from mixerhub.adapters._params import Duration
from mixerhub.plugins import AdapterRegistry

PERMISSION_DENIED = 7


class OpaParams(Params):
    policy: tuple[str, ...] = Field(
        (), description="Rego modules. Embedded: evaluated in-process. With url: uploaded to "
                        "that OPA server when the handler starts")
    check_method: str | None = Field(
        None, alias="checkMethod",
        description="The decision, a reference such as data.mixerauthz.allow: a boolean, or "
                    "an object whose 'allowed' is one")
    fail_close: bool = Field(
        False, alias="failClose",
        description="Deny when the policy cannot be evaluated; a rule's failPolicy wins")
    url: str | None = Field(
        None, description="A remote OPA server (http:// or https://); absent: embedded")
    policy_path: str | None = Field(
        None, alias="policyPath",
        description="With url: the decision's path under /v1/data, e.g. envoy/authz/allow; "
                    "default: from checkMethod")
    input_shape: Literal["authorization", "envoy"] = Field(
        "authorization", alias="inputShape",
        description="authorization: input is the instance (Istio); envoy: OPA-Envoy's input")
    caching_interval: Duration = Field(
        "5s", alias="cachingInterval", validate_default=True,
        description="How long a verdict may be reused for requests with the same instance; "
                    "keep it short for policies that read the time")
    caching_use_count: int = Field(1000, ge=0, alias="cachingUseCount",
                                   description="How many times a verdict may be reused")
    timeout: Duration = Field("1s", validate_default=True,
                              description="With url: the most a decision may take")

    @model_validator(mode="after")
    def _mode(self) -> OpaParams:
        if self.check_method is not None and not _rego.REF.fullmatch(self.check_method):
            raise ValueError(f"checkMethod: {self.check_method!r} is not a reference such as "
                             "data.mixerauthz.allow")
        if self.url is None:
            _validate_embedded(self)
        else:
            check_url(self.url)
            if self.policy_path is None and self.check_method is None:
                raise ValueError("with url, give policyPath (or checkMethod)")
            normalize_path(self.policy_path or self.check_method or "")
        return self

    def decision_path(self) -> str:
        """The decision as a slash path, e.g. envoy/authz/allow."""
        return normalize_path(self.policy_path or self.check_method or "")


def _validate_embedded(params: OpaParams) -> None:
    """Compile now, so a bad policy fails `mixerhub validate` and reloads, not requests."""
    if not params.policy:
        raise ValueError("give policy (Rego modules, evaluated in-process) or url "
                         "(a remote OPA server)")
    if params.check_method is None:
        raise ValueError("checkMethod: required with an embedded policy")
    try:
        policy = _rego.Policy(params.policy, params.check_method)
    except _rego.RegoFailure as exc:
        raise ValueError(f"policy does not compile: {exc}") from None
    missing = _rego.missing_builtins(params.policy, policy.rego)
    if missing:
        raise ValueError(f"built-ins not available in the embedded Rego engine (regopy "
                         f"{_rego.engine_version()}): {', '.join(missing)}; evaluate this "
                         "policy on an OPA server (url) instead")
    _rego.probe(policy)


class OpaAdapter(BaseAdapter):
    """Authorization by a Rego policy, in-process (regopy) or on an OPA server."""

    name: ClassVar[str] = "opa"
    Params = OpaParams
    templates: ClassVar[frozenset[str]] = frozenset({"authorization"})

    def __init__(self, params: OpaParams, env: AdapterEnv) -> None:
        super().__init__(params, env)
        self.params: OpaParams = params
        self.fail_closed = params.fail_close  # the rule's failPolicy takes precedence
        self._shape = envoy_input if params.input_shape == "envoy" else authorization_input
        self._path = params.decision_path() if params.url else ""
        self._decision_name = params.check_method or self._path
        self._rego: _rego.Policy | None = None
        self._server: OpaServer | None = None
        self._to_upload = params.policy if params.url else ()

    async def start(self) -> None:
        if self.params.url is None:
            self._rego = _rego.Policy(self.params.policy, self.params.check_method or "")
            self.status = Status.OK
            return
        self._server = OpaServer(self.params.url, self.params.timeout.total_seconds())
        await self._server.open()
        try:
            await self._upload()
        except PolicyRejected:
            await self.stop()
            raise  # a policy OPA refuses is a config error: the snapshot is not used
        except BackendError as exc:  # OPA down: the hub starts, checks follow fail policy
            self.env.on_error()
            self._failed(exc)
            return
        self.status = Status.OK

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None
        self._rego = None
        self.status = Status.NOT_READY

    async def check(self, instance: Any) -> CheckResult:
        document = self._shape(instance)
        try:
            decision = await self._decide(document)
        except BackendError as exc:
            self._failed(exc)
            raise
        self.status = Status.OK
        return self._verdict(decision)

    async def _decide(self, document: dict[str, Any]) -> _rego.Decision:
        if self._server is not None:
            await self._upload()
            return await self._server.decide(self._path, document)
        if self._rego is None:
            raise BackendError("opa: adapter not started")
        try:
            return self._rego.evaluate(document)
        except _rego.RegoFailure as exc:
            raise BackendError(f"opa: evaluating {self.params.check_method} failed: {exc}"
                               ) from None

    async def _upload(self) -> None:
        """Upload the policy modules once (again after a failure), before deciding."""
        if not self._to_upload or self._server is None:
            return
        for index, source in enumerate(self._to_upload):
            await self._server.upload(f"mixerhub/{self.env.handler}/{index}", source)
        self._to_upload = ()
        self.env.logger.info("policy uploaded", url=self.params.url,
                             modules=len(self.params.policy))

    def _verdict(self, decision: _rego.Decision) -> CheckResult:
        allowed = _allowed(decision, self._decision_name)
        lifetime = (self.params.caching_interval, self.params.caching_use_count)
        if allowed:
            return CheckResult(0, "", *lifetime)
        reason = "undefined" if not decision.defined else "denied"
        return CheckResult(PERMISSION_DENIED, f"opa: {reason} by {self._decision_name}",
                           *lifetime)

    def _failed(self, exc: Exception) -> None:
        if self.status is not Status.ERROR:
            self.env.logger.warning("opa decision failed", error=str(exc))
        self.status = Status.ERROR


def _allowed(decision: _rego.Decision, name: str) -> bool:
    """true/false, or OPA-Envoy's object form {"allowed": bool, ...}; undefined denies."""
    value = decision.value
    if not decision.defined:
        return False
    if isinstance(value, dict) and isinstance(value.get("allowed"), bool):
        return bool(value["allowed"])
    if isinstance(value, bool):
        return value
    raise BackendError(f"opa: {name} is {json.dumps(value)[:100]}, neither a boolean nor an "
                       "object with a boolean 'allowed'")


@hookimpl
def mixerhub_register_adapters(registry: AdapterRegistry) -> None:
    registry.register(OpaAdapter)
