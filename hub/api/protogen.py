"""Generate the Python modules for the Mixer v1 protos with grpcio-tools.

The generated modules are checked in (``hub/api/mixer/v1/*_pb2*.py``) so that an
install needs no compiler; ``tests/hub/test_protos.py`` regenerates them and fails
if they differ. Run ``python -m mixerhub.api.protogen`` after editing a ``.proto``.

The protos are compiled with the virtual include root ``mixerhub=hub`` so that the
generated imports read ``from mixerhub.api.mixer.v1 import ...``: they live inside
our package and cannot collide with anyone's ``istio`` package.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

PROTO_NAMES = ("attributes", "check", "report", "service")
_API_DIR = Path(__file__).resolve().parent
_PROTO_DIR = _API_DIR / "mixer" / "v1"


def _include_dirs() -> list[str]:
    import google.rpc.status_pb2
    import grpc_tools

    common_protos = Path(google.rpc.status_pb2.__file__).resolve().parents[2]
    bundled = Path(grpc_tools.__file__).resolve().parent / "_proto"
    return [str(common_protos), str(bundled)]


def generate(out_dir: Path) -> list[Path]:
    """Compile every Mixer proto into ``out_dir``; return the files written."""
    from grpc_tools import protoc

    hub_root = _API_DIR.parent
    args = ["protoc", f"-Imixerhub={hub_root}"]
    args += [f"-I{d}" for d in _include_dirs()]
    args += [f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}"]
    args += [f"mixerhub/api/mixer/v1/{name}.proto" for name in PROTO_NAMES]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))
    generated = out_dir / "mixerhub" / "api" / "mixer" / "v1"
    wanted = [p for p in generated.iterdir() if p.suffix in (".py", ".pyi")]
    # grpc stubs only for the file that declares the service; the others would be empty.
    return sorted(p for p in wanted if not p.name.endswith("_pb2_grpc.py") or p.name.startswith("service"))


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        for path in generate(Path(tmp)):
            (_PROTO_DIR / path.name).write_bytes(path.read_bytes())
            print(f"wrote {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
