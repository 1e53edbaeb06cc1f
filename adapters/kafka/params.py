"""The ``params`` of a ``compiledAdapter: kafka`` handler, and the producer options they make.

Every key is camelCase (the style of Istio's adapter params); unknown keys are errors.
Nothing here contacts a broker: ``mixerhub validate`` checks the form only.
"""

from __future__ import annotations

import functools
import re
import ssl
from typing import Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator

from mixerhub.adapter import Params
from mixerhub.attributes.types import ValueType
from mixerhub.expr import CompiledExpression, ExpressionCompileError, compile_expression

Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]
FullPolicy = Literal["drop-oldest", "block"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

# Kafka's own rule for topic names.
_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}\Z")
_BROKER = re.compile(r"(\[[0-9a-fA-F:.]+\]|[^\s:\[\]/]+):(\d{1,5})\Z")
# Types whose values have one obvious text form for a record key.
_KEY_TYPES = frozenset(ValueType) - {ValueType.STRING_MAP}


class TlsParams(Params):
    """TLS towards the brokers (securityProtocol SSL or SASL_SSL)."""

    caFile: str | None = Field(None, description="PEM file of the CAs to trust (default: "
                                                  "the system's)")
    certFile: str | None = Field(None, description="PEM client certificate, for mutual TLS")
    keyFile: str | None = Field(None, description="PEM private key of certFile")
    keyPassword: SecretStr | None = Field(None, description="password of keyFile, if any")
    checkHostname: bool = Field(True, description="verify that the broker's certificate "
                                                  "names the host connected to")

    @model_validator(mode="after")
    def _cert_and_key(self) -> TlsParams:
        if (self.certFile is None) != (self.keyFile is None):
            raise ValueError("certFile and keyFile go together")
        return self

    def context(self) -> ssl.SSLContext:
        """An SSL context from these options (reads the files)."""
        context = ssl.create_default_context(cafile=self.caFile)
        context.check_hostname = self.checkHostname
        if self.certFile and self.keyFile:
            password = self.keyPassword.get_secret_value() if self.keyPassword else None
            context.load_cert_chain(self.certFile, self.keyFile, password)
        return context


class SaslParams(Params):
    """SASL authentication (securityProtocol SASL_PLAINTEXT or SASL_SSL)."""

    mechanism: SaslMechanism = Field("PLAIN", description="PLAIN, SCRAM-SHA-256 or "
                                                          "SCRAM-SHA-512")
    username: str = Field(min_length=1, description="the SASL user")
    password: SecretStr = Field(description="the SASL password (never logged)")


class KafkaParams(Params):
    """The ``params`` of a ``compiledAdapter: kafka`` handler."""

    brokers: list[str] = Field(min_length=1, description="bootstrap brokers, HOST:PORT each")
    topic: str = Field(description="the topic every record of this handler goes to")
    key: str | None = Field(None, description="an expression over the attributes whose "
                                              "value (as text) is each record's key; "
                                              "records with one key keep their order; "
                                              "none: no key")
    acks: Literal["all", "1", "0"] = Field("all", description="broker acknowledgement a "
                                           "record waits for: all (in-sync replicas), 1 "
                                           "(leader) or 0 (none: no delivery guarantee)")
    compression: Compression = Field("none", description="none, gzip, snappy, lz4 or zstd "
                                                         "(the last three need their "
                                                         "Python codec installed)")
    lingerMs: int = Field(5, ge=0, le=60_000, description="how long to wait for more "
                                                          "records before sending a "
                                                          "partial batch")
    maxBatchBytes: int = Field(1_000_000, ge=1024, le=16_777_216,
                               description="the largest batch sent to one partition")
    requestTimeoutMs: int = Field(15_000, ge=100, description="a batch not acknowledged "
                                                              "in this time has failed")
    retryBackoffMs: int = Field(100, ge=1, description="first wait after a failure; "
                                                       "doubles on each failure")
    maxRetryBackoffMs: int = Field(10_000, ge=1, description="longest wait between tries")
    bufferRecords: int = Field(10_000, ge=10, description="records held in memory at most "
                                                          "(queued and in flight)")
    bufferBytes: int = Field(16 * 1024 * 1024, ge=4096,
                             description="bytes of records held in memory at most")
    fullPolicy: FullPolicy = Field("drop-oldest", description="when memory is full and "
                                   "nothing more fits the spool: drop-oldest (reports never "
                                   "wait) or block (a report waits up to maxBlockMs, then "
                                   "its records are dropped); every drop is counted")
    maxBlockMs: int = Field(1_000, ge=0, le=60_000,
                            description="fullPolicy block: longest wait of one report")
    spoolDir: str | None = Field(None, description="directory of the on-disk spool (one "
                                                   "folder per handler inside); none: "
                                                   "memory only")
    maxSpoolBytes: int = Field(1 << 30, ge=65_536, description="the spool's size limit")
    flushTimeoutMs: int = Field(10_000, ge=0, description="on stop, how long to try "
                                                          "delivering what is in memory "
                                                          "before spooling it")
    clientId: str = Field("mixerhub", min_length=1, description="client id the brokers "
                                                                "see")
    securityProtocol: SecurityProtocol = Field("PLAINTEXT", description="PLAINTEXT, SSL, "
                                               "SASL_PLAINTEXT or SASL_SSL")
    tls: TlsParams | None = Field(None, description="TLS options (SSL, SASL_SSL)")
    sasl: SaslParams | None = Field(None, description="SASL options (SASL_PLAINTEXT, "
                                                      "SASL_SSL)")
    redact: list[str] = Field(default_factory=list, description="more keys whose values "
                              "are redacted, besides the hub's list (authorization, "
                              "cookie, x-api-key …)")

    _key_expression: CompiledExpression | None = PrivateAttr(None)

    @field_validator("acks", mode="before")
    @classmethod
    def _acks_as_text(cls, acks: Any) -> Any:
        # YAML writes `acks: 1`; Kafka also spells "all" as -1.
        if isinstance(acks, int) and not isinstance(acks, bool):
            return "all" if acks == -1 else str(acks)
        return "all" if acks == "-1" else acks

    @field_validator("key")
    @classmethod
    def _key_compiles(cls, key: str | None) -> str | None:
        if key is not None:
            _compile_key(key)
        return key

    @field_validator("brokers")
    @classmethod
    def _broker_form(cls, brokers: list[str]) -> list[str]:
        for broker in brokers:
            found = _BROKER.match(broker)
            if found is None or not 0 < int(found.group(2)) < 65536:
                raise ValueError(f"{broker!r} is not HOST:PORT")
        return brokers

    @field_validator("topic")
    @classmethod
    def _topic_form(cls, topic: str) -> str:
        if not _TOPIC.match(topic) or topic in (".", ".."):
            raise ValueError(f"{topic!r} is not a Kafka topic name (letters, digits, '.', "
                             "'_' and '-', at most 249)")
        return topic

    @field_validator("compression")
    @classmethod
    def _codec_installed(cls, compression: str) -> str:
        if compression != "none" and not _codec_available(compression):
            raise ValueError(f"compression {compression} needs its Python codec, which "
                             "is not installed (gzip always works)")
        return compression

    @model_validator(mode="after")
    def _consistent(self) -> KafkaParams:
        sasl_wanted = self.securityProtocol.startswith("SASL_")
        if sasl_wanted and self.sasl is None:
            raise ValueError(f"securityProtocol {self.securityProtocol} needs sasl")
        if not sasl_wanted and self.sasl is not None:
            raise ValueError(f"sasl is set but securityProtocol is {self.securityProtocol}")
        if self.tls is not None and not self.securityProtocol.endswith("SSL"):
            raise ValueError(f"tls is set but securityProtocol is {self.securityProtocol}")
        if self.maxRetryBackoffMs < self.retryBackoffMs:
            raise ValueError("maxRetryBackoffMs is below retryBackoffMs")
        if self.key is not None:
            self._key_expression = _compile_key(self.key)
        return self

    @property
    def key_expression(self) -> CompiledExpression | None:
        """The compiled ``key``, or None."""
        return self._key_expression

    def producer_options(self) -> dict[str, Any]:
        """Keyword arguments for ``aiokafka.AIOKafkaProducer`` (reads TLS files)."""
        options: dict[str, Any] = {
            "bootstrap_servers": list(self.brokers), "client_id": self.clientId,
            "acks": "all" if self.acks == "all" else int(self.acks),
            "compression_type": None if self.compression == "none" else self.compression,
            "linger_ms": self.lingerMs, "max_batch_size": self.maxBatchBytes,
            "max_request_size": max(self.maxBatchBytes + 65_536, 1_048_576),
            "request_timeout_ms": self.requestTimeoutMs,
            "retry_backoff_ms": self.retryBackoffMs,
            "security_protocol": self.securityProtocol,
        }
        if self.securityProtocol.endswith("SSL"):
            options["ssl_context"] = (self.tls or TlsParams.model_validate({})).context()
        if self.sasl is not None:
            options["sasl_mechanism"] = self.sasl.mechanism
            options["sasl_plain_username"] = self.sasl.username
            options["sasl_plain_password"] = self.sasl.password.get_secret_value()
        return options


@functools.lru_cache(maxsize=256)
def _compile_key(text: str) -> CompiledExpression:
    """The key expression, compiled against the default attribute manifest (Istio's plus
    mixerhub's): adapter params are validated before a config's own manifest applies."""
    try:
        compiled = compile_expression(text)
    except ExpressionCompileError as exc:
        raise ValueError(f"{exc} in {text!r}") from None
    if compiled.type not in _KEY_TYPES:
        raise ValueError(f"{text!r} is {compiled.type.value}; a key needs a value with a "
                         "text form (not a STRING_MAP)")
    return compiled


def _codec_available(name: str) -> bool:
    from aiokafka import codec  # type: ignore[import-untyped]

    checks = {"gzip": codec.has_gzip, "snappy": codec.has_snappy, "lz4": codec.has_lz4,
              "zstd": codec.has_zstd}
    return bool(checks[name]())
