"""The ``mixerhub`` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from mixerhub import __version__


def _serve(args: argparse.Namespace) -> int:
    from mixerhub.app import Settings, run, serve
    from mixerhub.config.files import ConfigError
    from mixerhub.logs import configure

    configure(args.log_level)
    env_config = os.environ.get("MIXERHUB_CONFIG", "")
    paths = args.config or [p for p in env_config.split(os.pathsep) if p]
    settings = Settings(grpc=args.grpc, http=args.http, config=tuple(paths),
                        default_namespace=args.default_namespace, watch=not args.no_watch,
                        cache_size=args.cache_size, ratelimit_backend=args.ratelimit_backend)
    settings = _with_recording(settings, args)
    settings = _with_hardening(settings, args)
    settings = _with_tracing(settings, args)
    try:
        run(serve(settings))
    except ConfigError as exc:
        print(f"mixerhub: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:  # a port in use surfaces as either
        print(f"mixerhub: cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _validate(args: argparse.Namespace) -> int:
    from mixerhub.config.errors import ConfigErrors
    from mixerhub.config.files import ConfigError
    from mixerhub.config.loader import load_config
    from mixerhub.plugins import load_plugins

    try:
        config = load_config(args.paths, load_plugins(), args.default_namespace)
    except ConfigErrors as exc:
        for line in exc.errors:
            print(line)
        print(f"{len(exc.errors)} error{'s' if len(exc.errors) != 1 else ''}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(exc)
        return 1
    print(f"ok: {config.documents} documents, {len(config.rules)} rules, "
          f"{len(config.handlers)} handlers, {len(config.instances)} instances")
    return 0


def _adapters(args: argparse.Namespace) -> int:
    from mixerhub.plugins import load_plugins

    plugins = load_plugins()
    for name, cls in plugins.adapters.items():
        templates = ", ".join(sorted(getattr(cls, "templates", ())))
        print(f"{name:<14} {cls.__module__:<34} templates: {templates}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from mixerhub.evalcmd import eval_cases, eval_one

    if args.cases:
        return eval_cases(args.cases, args.verbose)
    if not args.expression:
        print("mixerhub eval: give an EXPRESSION or --cases FILE", file=sys.stderr)
        return 2
    return eval_one(args.expression, args.attributes, args.manifest)


def _test(args: argparse.Namespace) -> int:
    from mixerhub.logs import configure
    from mixerhub.plugins import load_plugins
    from mixerhub.policytest import (failure_blocks, find_test_files, progress, run_file,
                                     summary, write_junit)

    files = find_test_files(args.paths)
    if not files:
        print(f"mixerhub test: no *_test.yaml under {' '.join(args.paths)}", file=sys.stderr)
        return 2
    configure("warning")
    plugins = load_plugins()
    results = []
    for path in files:
        results.append(run_file(path, plugins, args.default_namespace))
        print(progress(results[-1]), flush=True)
    for block in failure_blocks(results):
        print(f"\n{block}")
    line, _, failed, errors = summary(results)
    if args.junit:
        write_junit(results, args.junit)
    print(f"\n{line}")
    return 1 if failed or errors else 0


def _envoy_config(args: argparse.Namespace) -> int:
    from mixerhub.envoy.bootstrap import EnvoyOptions, render

    pairs: dict[str, dict[str, str]] = {"attribute": {}, "ratelimit-header": {}}
    for option, items in (("attribute", args.attribute),
                          ("ratelimit-header", args.ratelimit_header)):
        for item in items:
            name, sep, value = item.partition("=")
            if not sep or not name or not value:
                print(f"mixerhub envoy-config: --{option} {item!r} is not NAME=VALUE",
                      file=sys.stderr)
                return 2
            pairs[option][name] = value
    attributes = pairs["attribute"]
    opts = EnvoyOptions(hub=args.hub, hub_http=args.hub_http, listen=args.listen,
                        upstream=args.upstream, mode=args.mode, fail_open=args.fail_open,
                        ratelimit=args.ratelimit or bool(args.ratelimit_header),
                        ratelimit_domain=args.ratelimit_domain,
                        ratelimit_headers=pairs["ratelimit-header"],
                        admin=args.admin, attributes=attributes, timeout_ms=args.timeout_ms)
    try:
        text = render(opts)
    except ValueError as exc:
        print(f"mixerhub envoy-config: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def _proxy(args: argparse.Namespace) -> int:
    from mixerhub.app import run
    from mixerhub.errors import AttributeJSONError
    from mixerhub.logs import configure
    from mixerhub.proxy_filter.attributes import parse_static
    from mixerhub.proxy_filter.gate import GateOptions
    from mixerhub.proxy_filter.mixer_client import hub_tls_from
    from mixerhub.proxy_filter.proxy import ProxyConfig, serve_proxy
    from mixerhub.tls import TlsError

    configure(args.log_level)
    try:
        attributes = parse_static(args.attribute)
    except (ValueError, AttributeJSONError) as exc:
        print(f"mixerhub proxy: --attribute {exc}", file=sys.stderr)
        return 2
    try:
        hub_tls = hub_tls_from(args.hub_tls_ca, args.hub_tls_cert, args.hub_tls_key,
                               args.hub_tls_server_name)
    except TlsError as exc:
        print(f"mixerhub proxy: {exc}", file=sys.stderr)
        return 2
    gate = GateOptions(check_timeout=args.check_timeout, fail_open=args.fail_open,
                       cache_size=args.cache_size,
                       tls_reload_interval=args.hub_tls_reload_interval)
    try:
        config = ProxyConfig(listen=args.listen, upstream=args.upstream, hub=args.hub,
                             hub_http=args.hub_http, hub_tls=hub_tls, metrics=args.metrics,
                             attributes=attributes, service=args.service,
                             namespace=args.namespace,
                             quotaspec_interval=args.quotaspec_interval, gate=gate)
    except ValueError as exc:
        print(f"mixerhub proxy: {exc}", file=sys.stderr)
        return 2
    try:
        run(serve_proxy(config))
    except (OSError, RuntimeError) as exc:  # a port in use surfaces as either
        print(f"mixerhub proxy: cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _proxy_tls_options(proxy: argparse.ArgumentParser) -> None:
    tls = proxy.add_argument_group("the hub over TLS (docs/proxy.md)")
    tls.add_argument("--hub-tls-ca", metavar="FILE",
                     default=os.environ.get("MIXERHUB_PROXY_HUB_TLS_CA"),
                     help="reach the hub's gRPC and HTTP ports over TLS, trusting this PEM "
                          "CA bundle (env MIXERHUB_PROXY_HUB_TLS_CA)")
    tls.add_argument("--hub-tls-cert", metavar="FILE",
                     default=os.environ.get("MIXERHUB_PROXY_HUB_TLS_CERT"),
                     help="present this PEM client certificate chain to a hub with mTLS; its "
                          "identity becomes context.reporter.principal "
                          "(env MIXERHUB_PROXY_HUB_TLS_CERT)")
    tls.add_argument("--hub-tls-key", metavar="FILE",
                     default=os.environ.get("MIXERHUB_PROXY_HUB_TLS_KEY"),
                     help="its PEM private key (env MIXERHUB_PROXY_HUB_TLS_KEY)")
    tls.add_argument("--hub-tls-server-name", metavar="NAME",
                     default=os.environ.get("MIXERHUB_PROXY_HUB_TLS_SERVER_NAME"),
                     help="the name to check in the hub's certificate (default: the host of "
                          "--hub and --hub-http; env MIXERHUB_PROXY_HUB_TLS_SERVER_NAME)")
    tls.add_argument("--hub-tls-reload-interval", type=float, default=10.0, metavar="SECONDS",
                     help="how often to check the --hub-tls-* files for a new certificate, "
                          "then use it for new calls without a restart (0: never)")


def _with_recording(settings: Any, args: argparse.Namespace) -> Any:
    """The serve flags of recorded checks (docs/decisions.md) added to the settings."""
    import dataclasses

    return dataclasses.replace(
        settings, record_checks=args.record_checks or "", record_max_bytes=args.record_max_bytes,
        record_backups=args.record_backups, record_kafka=args.record_kafka or "",
        record_kafka_topic=args.record_kafka_topic,
        record_kafka_spool=args.record_kafka_spool or "")


def _recording_options(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("recorded checks (docs/decisions.md)")
    group.add_argument("--record-checks", metavar="FILE",
                       help="record every check decision to this JSON-lines file")
    group.add_argument("--record-max-bytes", type=int, default=100 << 20, metavar="N",
                       help="rotate the file before it grows past N bytes (default 100 MiB)")
    group.add_argument("--record-backups", type=int, default=5, metavar="N",
                       help="rotated files kept: FILE.1 … FILE.N (default 5)")
    group.add_argument("--record-kafka", metavar="HOST:PORT[,HOST:PORT]",
                       help="also record every check decision to Kafka, at these brokers")
    group.add_argument("--record-kafka-topic", default="mixerhub.decisions", metavar="TOPIC",
                       help="the topic of recorded checks (default mixerhub.decisions)")
    group.add_argument("--record-kafka-spool", metavar="DIR",
                       help="spool undelivered decision records here (default: memory only)")


def _with_hardening(settings: Any, args: argparse.Namespace) -> Any:
    """The serve flags of TLS, the admin port and overload (docs/operations.md)."""
    import dataclasses

    return dataclasses.replace(
        settings, tls_cert=args.tls_cert or "", tls_key=args.tls_key or "",
        tls_client_ca=args.tls_client_ca or "", tls_reload_interval=args.tls_reload_interval,
        admin=args.admin or "", debug_public=args.debug_public,
        max_inflight_checks=args.max_inflight_checks, shed_latency_ms=args.shed_latency_ms,
        max_inflight_reports=args.max_inflight_reports)


def _hardening_options(serve: argparse.ArgumentParser) -> None:
    tls = serve.add_argument_group("TLS and the admin port (docs/operations.md)")
    tls.add_argument("--tls-cert", metavar="FILE", default=os.environ.get("MIXERHUB_TLS_CERT"),
                     help="serve gRPC and the HTTP API over TLS with this PEM certificate "
                          "chain (env MIXERHUB_TLS_CERT)")
    tls.add_argument("--tls-key", metavar="FILE", default=os.environ.get("MIXERHUB_TLS_KEY"),
                     help="its PEM private key (env MIXERHUB_TLS_KEY)")
    tls.add_argument("--tls-client-ca", metavar="FILE",
                     default=os.environ.get("MIXERHUB_TLS_CLIENT_CA"),
                     help="require client certificates signed by this PEM CA bundle (mTLS); "
                          "the identity becomes context.reporter.principal "
                          "(env MIXERHUB_TLS_CLIENT_CA)")
    tls.add_argument("--tls-reload-interval", type=float, default=10.0, metavar="SECONDS",
                     help="how often changed TLS files are picked up (SIGHUP: at once)")
    tls.add_argument("--admin", metavar="HOST:PORT", default=os.environ.get("MIXERHUB_ADMIN"),
                     help="plain-HTTP port for /healthz, /readyz and /metrics (probes and "
                          "scrapers without client certificates; env MIXERHUB_ADMIN)")
    tls.add_argument("--debug-public", action="store_true",
                     help="serve /debug/* on every HTTP listener, not only loopback ones")
    load = serve.add_argument_group("overload (docs/operations.md)")
    load.add_argument("--max-inflight-checks", type=int, default=0, metavar="N",
                      help="answer checks past N at once with UNAVAILABLE/503 (0: no bound)")
    load.add_argument("--shed-latency-ms", type=float, default=0.0, metavar="MS",
                      help="shed checks while the queue latency (event-loop lag) exceeds MS "
                           "(0: no threshold)")
    load.add_argument("--max-inflight-reports", type=int, default=1024, metavar="N",
                      help="dispatch at most N report messages at once; the rest wait "
                           "(backpressure; 0: no bound)")


def _with_tracing(settings: Any, args: argparse.Namespace) -> Any:
    """The serve flags of OpenTelemetry tracing (docs/tracing.md). ``--tracing`` alone
    exports where the standard OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT says (OTLP's default
    without it); those variables alone do not turn tracing on."""
    import dataclasses

    endpoint = args.otlp_endpoint or ""
    if not endpoint and args.tracing:
        endpoint = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                    or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "localhost:4317")
    return dataclasses.replace(settings, otlp_endpoint=endpoint,
                               trace_sample_ratio=args.trace_sample_ratio)


def _ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _tracing_options(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("tracing (docs/tracing.md)")
    group.add_argument("--otlp-endpoint", metavar="HOST:PORT",
                       default=os.environ.get("MIXERHUB_OTLP_ENDPOINT"),
                       help="trace checks and reports with OpenTelemetry, exporting spans "
                            "over OTLP/gRPC to this collector (https://HOST:PORT for TLS; "
                            "env MIXERHUB_OTLP_ENDPOINT; default: no tracing)")
    group.add_argument("--tracing", action="store_true",
                       help="trace, exporting to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or "
                            "OTEL_EXPORTER_OTLP_ENDPOINT (default localhost:4317)")
    group.add_argument("--trace-sample-ratio", type=_ratio, metavar="RATIO",
                       default=_ratio(os.environ.get("MIXERHUB_TRACE_SAMPLE_RATIO", "1.0")),
                       help="share of the traces the hub starts that are recorded; a "
                            "caller's sampling decision is always followed (default 1.0; "
                            "env MIXERHUB_TRACE_SAMPLE_RATIO)")


def _certs_dev(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mixerhub.certs import DEFAULT_CLIENTS, DEFAULT_HOSTS, write_dev_set

    for spec in args.client or ():
        name = spec.partition("=")[0]
        if not name or "/" in name or name in ("ca", "server"):
            print(f"mixerhub certs dev: --client {spec!r}: give NAME or NAME=URI "
                  "(NAME is a file name, not ca or server)", file=sys.stderr)
            return 2
    written = write_dev_set(Path(args.out), args.hosts or DEFAULT_HOSTS,
                            args.client or DEFAULT_CLIENTS)
    for path in written:
        print(path)
    print("development certificates only: the CA key is not protected", file=sys.stderr)
    return 0


def _tail(args: argparse.Namespace) -> int:
    import asyncio

    from mixerhub.adapters.kafka.tail import tail

    table = sys.stdout.isatty() if args.format == "auto" else args.format == "table"
    try:
        return asyncio.run(tail(args.brokers, args.topic, sys.stdout, table=table,
                                from_beginning=args.from_beginning, count=args.count))
    except KeyboardInterrupt:
        return 0


def _diff(args: argparse.Namespace) -> int:
    from mixerhub.diff.command import main as diff_main

    return diff_main(args)


def _diff_parser(sub: Any) -> None:
    diff = sub.add_parser("diff", help="replay recorded checks through a base and a "
                                       "candidate config; report the verdicts that change")
    diff.add_argument("--base", action="append", required=True, metavar="CONFIG",
                      help="the config in force: file or directory (repeatable)")
    diff.add_argument("--candidate", action="append", required=True, metavar="CONFIG",
                      help="the changed config (repeatable)")
    diff.add_argument("--traffic", action="append", required=True, metavar="SOURCE",
                      help="recorded checks: FILE (with its rotated FILE.N), a glob, '-' "
                           "(stdin) or kafka://HOST:PORT[,HOST:PORT]/TOPIC (repeatable)")
    diff.add_argument("--json", metavar="FILE",
                      help="also write the report as JSON ('-': JSON on stdout, no table)")
    diff.add_argument("--examples", type=int, default=5, metavar="N",
                      help="changed checks shown with their attributes (default 5)")
    diff.add_argument("--top", type=int, default=10, metavar="N",
                      help="changed attribute patterns listed (default 10)")
    diff.add_argument("--fail-on-change", action="store_true",
                      help="exit 1 when any verdict changes (for CI)")
    diff.add_argument("--jobs", type=int, default=0, metavar="N",
                      help="worker processes for traffic files of 16 MiB or more "
                           "(default: one per CPU; 1: this process only)")
    _namespace_option(diff)
    diff.set_defaults(func=_diff)


def _version(args: argparse.Namespace) -> int:
    print(f"mixerhub {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mixerhub", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the hub")
    serve.add_argument("--config", action="append", metavar="PATH",
                       help="config file or directory (repeatable; replaces env "
                            "MIXERHUB_CONFIG, whose paths are joined with ':')")
    serve.add_argument("--grpc", default=os.environ.get("MIXERHUB_GRPC", "127.0.0.1:9091"),
                       metavar="HOST:PORT", help="gRPC address (env MIXERHUB_GRPC)")
    serve.add_argument("--http", default=os.environ.get("MIXERHUB_HTTP", "127.0.0.1:9093"),
                       metavar="HOST:PORT", help="HTTP admin address (env MIXERHUB_HTTP)")
    serve.add_argument("--log-level", default=os.environ.get("MIXERHUB_LOG_LEVEL", "info"))
    _namespace_option(serve)
    serve.add_argument("--no-watch", action="store_true",
                       help="do not reload on file changes (SIGHUP still reloads)")
    serve.add_argument("--cache-size", type=int, default=10_000, metavar="N",
                       help="hub decision cache entries (0 turns it off)")
    serve.add_argument("--ratelimit-backend", metavar="memory|redis://HOST:PORT",
                       default=os.environ.get("MIXERHUB_RATELIMIT_BACKEND", "memory"),
                       help="counters of descriptor-YAML rate limits (Envoy's rate-limit "
                            "service); Redis shares them between replicas")
    _recording_options(serve)
    _hardening_options(serve)
    _tracing_options(serve)
    serve.set_defaults(func=_serve)
    validate = sub.add_parser("validate", help="check config files; exit 1 on any error")
    validate.add_argument("paths", nargs="+", metavar="PATH")
    _namespace_option(validate)
    validate.set_defaults(func=_validate)
    ev = sub.add_parser("eval", help="evaluate an expression, or run an expression case file")
    ev.add_argument("expression", nargs="?", metavar="EXPRESSION")
    ev.add_argument("--attributes", metavar="JSON|@FILE", help="attributes (docs/json.md)")
    ev.add_argument("--manifest", metavar="FILE", help="extra attributemanifest YAML")
    ev.add_argument("--cases", metavar="FILE", help="a case file (cexl_conformance.yaml format)")
    ev.add_argument("--verbose", action="store_true", help="show each failure")
    ev.set_defaults(func=_eval)
    test = sub.add_parser("test", help="run policy unit tests (*_test.yaml); exit 1 on any failure")
    test.add_argument("paths", nargs="+", metavar="PATH", help="test files or folders")
    test.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    _namespace_option(test)
    test.set_defaults(func=_test)
    adapters = sub.add_parser("adapters", help="list the adapters plugins provide")
    adapters.set_defaults(func=_adapters)
    envoy = sub.add_parser("envoy-config", help="print an Envoy bootstrap that uses the hub")
    envoy.add_argument("--hub", required=True, metavar="HOST:PORT", help="the hub's gRPC address")
    envoy.add_argument("--hub-http", metavar="HOST:PORT",
                       help="the hub's HTTP address (needed by --mode lua)")
    envoy.add_argument("--listen", required=True, metavar="HOST:PORT")
    envoy.add_argument("--upstream", required=True, metavar="HOST:PORT")
    envoy.add_argument("--mode", choices=("ext_authz", "lua"), default="ext_authz")
    envoy.add_argument("--fail-open", action="store_true",
                       help="let requests through when the hub is unreachable")
    envoy.add_argument("--ratelimit", action="store_true",
                       help="also ask the hub's rate-limit service")
    envoy.add_argument("--ratelimit-domain", default="mixerhub", metavar="DOMAIN")
    envoy.add_argument("--ratelimit-header", action="append", default=[],
                       metavar="HEADER=KEY",
                       help="build the rate-limit descriptor from request headers, each as "
                            "an entry KEY (repeatable, in order; implies --ratelimit)")
    envoy.add_argument("--admin", default="127.0.0.1:9901", metavar="HOST:PORT")
    envoy.add_argument("--attribute", action="append", default=[], metavar="NAME=VALUE",
                       help="a fixed attribute of this listener (repeatable), e.g. "
                            "destination.service.host=reviews.default.svc.cluster.local")
    envoy.add_argument("--timeout-ms", type=int, default=500, metavar="MS",
                       help="how long Envoy waits for the hub")
    envoy.set_defaults(func=_envoy_config)
    proxy = sub.add_parser("proxy", help="a reverse proxy that checks with the hub before "
                                         "forwarding and reports after")
    proxy.add_argument("--listen", required=True, metavar="HOST:PORT")
    proxy.add_argument("--upstream", required=True, metavar="http://HOST:PORT")
    proxy.add_argument("--hub", required=True, metavar="HOST:PORT", help="the hub's gRPC address")
    proxy.add_argument("--hub-http", metavar="HOST:PORT",
                       help="the hub's HTTP address, for QuotaSpecs (default: port 9093)")
    proxy.add_argument("--fail-open", action="store_true",
                       help="let requests through when the hub cannot answer (default: 503)")
    proxy.add_argument("--metrics", metavar="HOST:PORT", help="serve /metrics and /healthz")
    proxy.add_argument("--attribute", action="append", default=[], metavar="NAME=VALUE",
                       help="a static attribute, e.g. destination.service.name=reviews "
                            "(repeatable; typed by the attribute manifest)")
    proxy.add_argument("--service", metavar="NAME", help="ask for the QuotaSpecs bound to it")
    proxy.add_argument("--namespace", metavar="NS", help="the service's namespace")
    proxy.add_argument("--check-timeout", type=float, default=5.0, metavar="SECONDS")
    proxy.add_argument("--cache-size", type=int, default=10_000, metavar="N",
                       help="check cache entries (0 turns it off)")
    proxy.add_argument("--quotaspec-interval", type=float, default=30.0, metavar="SECONDS")
    proxy.add_argument("--log-level", default=os.environ.get("MIXERHUB_LOG_LEVEL", "info"))
    _proxy_tls_options(proxy)
    proxy.set_defaults(func=_proxy)
    tail = sub.add_parser("tail", help="print the records of a Kafka topic")
    tail.add_argument("--brokers", required=True, metavar="HOST:PORT[,HOST:PORT]")
    tail.add_argument("--topic", required=True, metavar="TOPIC")
    tail.add_argument("--from-beginning", action="store_true",
                      help="start at the oldest record (default: only new records)")
    tail.add_argument("--count", type=int, metavar="N", help="stop after N records")
    tail.add_argument("--format", choices=("auto", "json", "table"), default="auto",
                      help="JSON lines, or a table (auto: a table on a terminal)")
    tail.set_defaults(func=_tail)
    _diff_parser(sub)
    certs = sub.add_parser("certs", help="certificates for mTLS")
    certs_sub = certs.add_subparsers(dest="certs_command", required=True)
    dev = certs_sub.add_parser("dev", help="write a development CA, a server certificate "
                                           "and client certificates")
    dev.add_argument("--out", required=True, metavar="DIR")
    dev.add_argument("--hosts", nargs="+", metavar="HOST",
                     help="names and addresses of the server certificate "
                          "(default: localhost 127.0.0.1 ::1)")
    dev.add_argument("--client", action="append", metavar="NAME[=URI]",
                     help="a client certificate NAME.pem with subject CN NAME and URI SAN URI "
                          "(repeatable; default: proxy=spiffe://mixerhub.dev/proxy)")
    dev.set_defaults(func=_certs_dev)
    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_version)
    return parser


def _namespace_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--default-namespace", metavar="NS",
                        default=os.environ.get("MIXERHUB_DEFAULT_NAMESPACE", "istio-system"),
                        help="rules here apply to all traffic (env MIXERHUB_DEFAULT_NAMESPACE)")


def main(argv: Sequence[str] | None = None) -> int:
    from mixerhub.plugins import PluginError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except PluginError as exc:
        print(f"mixerhub: plugin error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
