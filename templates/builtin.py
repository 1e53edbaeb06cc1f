"""The built-in templates (field names as in Istio 1.4, so existing configs load)."""

from __future__ import annotations

from mixerhub.attributes.types import ValueType as T
from mixerhub.templates.model import TEXTUAL, Field, Template, Variety

_STR = TEXTUAL
_MAP = "map"

AUTHORIZATION = Template("authorization", Variety.CHECK, (
    Field("subject", "struct", fields=(
        Field("user", types=_STR, description="who is calling"),
        Field("groups", types=_STR, description="the caller's groups"),
        Field("properties", _MAP, description="more facts about the caller"),
    )),
    Field("action", "struct", fields=(
        Field("namespace", types=_STR), Field("service", types=_STR),
        Field("method", types=_STR), Field("path", types=_STR),
        Field("properties", _MAP, description="more facts about the action"),
    )),
), "who (subject) wants to do what (action); for policy adapters such as OPA")

CHECKNOTHING = Template("checknothing", Variety.CHECK, (),
                        "no data: the adapter decides from its own config (denier)")

LISTENTRY = Template("listentry", Variety.CHECK, (
    Field("value", types=_STR | {T.INT64}, description="the value looked up in a list"),
), "one value to check against a list")

QUOTA = Template("quota", Variety.QUOTA, (
    Field("dimensions", _MAP, description="what the quota is counted by (overrides match)"),
), "an allocation from a named quota")

LOGENTRY = Template("logentry", Variety.REPORT, (
    Field("variables", _MAP, description="the log record's fields"),
    Field("timestamp", types=frozenset({T.TIMESTAMP})),
    Field("severity", types=_STR),
    Field("monitored_resource_type", types=_STR),
    Field("monitored_resource_dimensions", _MAP),
), "one structured log record")

METRIC = Template("metric", Variety.REPORT, (
    Field("value", description="the observed value (INT64, DOUBLE, DURATION …)"),
    Field("dimensions", _MAP, description="the metric's labels"),
    Field("monitored_resource_type", types=_STR),
    Field("monitored_resource_dimensions", _MAP),
), "one observation of a metric")

REPORTNOTHING = Template("reportnothing", Variety.REPORT, (), "no data: a bare signal")

BUILTIN_TEMPLATES = (AUTHORIZATION, CHECKNOTHING, LISTENTRY, QUOTA, LOGENTRY, METRIC,
                     REPORTNOTHING)
