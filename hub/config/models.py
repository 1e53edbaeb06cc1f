"""The envelope of Istio-format config documents (phase one of validation).

Every model forbids unknown keys, except ``metadata``: Kubernetes exports carry uid,
resourceVersion, annotations and more, which mean nothing to the hub and are ignored.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

API_VERSIONS = ("config.istio.io/v1alpha2", "policy.istio.io/v1beta1")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metadata(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, description="the object's name")
    namespace: str | None = Field(None, description="defaults to the config namespace")


class Envelope(_Strict):
    apiVersion: str = Field(description="config.istio.io/v1alpha2 or policy.istio.io/v1beta1")
    kind: str
    metadata: Metadata
    spec: dict[str, Any] = Field(default_factory=dict)
    status: Any = Field(None, description="ignored (kubectl exports)")

    @field_validator("spec", mode="before")
    @classmethod
    def _empty_spec(cls, value: Any) -> Any:
        """``spec:`` with nothing after it (Istio's checknothing samples) is an empty spec."""
        return {} if value is None else value


class HandlerSpec(_Strict):
    compiledAdapter: str | None = Field(None, description="the adapter's name")
    adapter: str | None = Field(None, description="out-of-process adapter: not supported")
    connection: dict[str, Any] | None = Field(None, description="not supported")
    params: dict[str, Any] | None = Field(None, description="the adapter's params")


class InstanceSpec(_Strict):
    compiledTemplate: str | None = Field(None, description="the template's name")
    template: str | None = Field(None, description="out-of-process template: not supported")
    params: dict[str, Any] | None = Field(None, description="template fields: expressions")
    attributeBindings: dict[str, str] | None = Field(None, description="not supported")


class Action(_Strict):
    handler: str = Field(description="handler reference: name, name.kind or name.kind.ns")
    instances: list[str] = Field(default_factory=list, description="instance references")
    name: str | None = Field(None, description="the action's name")


class HeaderOperationTemplate(_Strict):
    name: str = Field(min_length=1, description="header name")
    values: list[str] = Field(default_factory=list, description="expressions")
    operation: Literal["REPLACE", "REMOVE", "APPEND"] = "REPLACE"


class RuleSpec(_Strict):
    match: str = Field("", description="expression; empty = always")
    actions: list[Action] = Field(default_factory=list)
    requestHeaderOperations: list[HeaderOperationTemplate] = Field(default_factory=list)
    responseHeaderOperations: list[HeaderOperationTemplate] = Field(default_factory=list)
    sampling: dict[str, Any] | None = Field(None, description="accepted, not applied")
    failPolicy: Literal["open", "closed"] | None = Field(
        None, description="mixerhub: what an evaluation or adapter failure does")
    shadow: bool = Field(False, description="mixerhub: evaluate and log, never enforce")


class AttributeInfo(_Strict):
    valueType: str
    description: str | None = None


class AttributeManifestSpec(_Strict):
    name: str | None = None
    revision: str | None = None
    attributes: dict[str, AttributeInfo] = Field(default_factory=dict)


class StringMatch(_Strict):
    exact: str | None = Field(None, description="the whole value equals this")
    prefix: str | None = Field(None, description="the value starts with this")
    regex: str | None = Field(None, description="the whole value matches this regex")

    @model_validator(mode="after")
    def _one_valid_match(self) -> StringMatch:
        given = [k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of exact, prefix, regex (got {', '.join(given)})")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"invalid regex {self.regex!r}: {exc}") from None
        return self


class QuotaMatch(_Strict):
    clause: dict[str, StringMatch] = Field(default_factory=dict)


class QuotaRef(_Strict):
    quota: str
    charge: int = 1


class QuotaRule(_Strict):
    match: list[QuotaMatch] = Field(default_factory=list)
    quotas: list[QuotaRef] = Field(default_factory=list)


class QuotaSpecSpec(_Strict):
    rules: list[QuotaRule] = Field(default_factory=list)


class ServiceRef(_Strict):
    name: str | None = None
    namespace: str | None = None
    domain: str | None = None
    service: str | None = None


class SpecRef(_Strict):
    name: str
    namespace: str | None = None


class QuotaSpecBindingSpec(_Strict):
    services: list[ServiceRef] = Field(default_factory=list)
    quotaSpecs: list[SpecRef] = Field(default_factory=list)
