"""The ``mixerhub`` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

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
                        cache_size=args.cache_size)
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
