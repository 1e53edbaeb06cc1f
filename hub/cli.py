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
    settings = Settings(grpc=args.grpc, http=args.http, config=tuple(args.config or ()))
    try:
        run(serve(settings))
    except ConfigError as exc:
        print(f"mixerhub: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"mixerhub: cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _version(args: argparse.Namespace) -> int:
    print(f"mixerhub {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mixerhub", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the hub")
    env_config = os.environ.get("MIXERHUB_CONFIG")
    serve.add_argument("--config", action="append", metavar="PATH",
                       default=env_config.split(os.pathsep) if env_config else None,
                       help="config file or directory (repeatable; env MIXERHUB_CONFIG)")
    serve.add_argument("--grpc", default=os.environ.get("MIXERHUB_GRPC", "127.0.0.1:9091"),
                       metavar="HOST:PORT", help="gRPC address (env MIXERHUB_GRPC)")
    serve.add_argument("--http", default=os.environ.get("MIXERHUB_HTTP", "127.0.0.1:9093"),
                       metavar="HOST:PORT", help="HTTP admin address (env MIXERHUB_HTTP)")
    serve.add_argument("--log-level", default=os.environ.get("MIXERHUB_LOG_LEVEL", "info"))
    serve.set_defaults(func=_serve)
    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
