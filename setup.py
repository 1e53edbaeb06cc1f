"""Maps the card's folders onto one import package, ``mixerhub`` (see docs/architecture.md).

Everything else about the distribution lives in pyproject.toml; this file only lists the
packages, which pyproject's static ``packages.find`` cannot rename, and the C
extensions.
"""

from pathlib import Path

from setuptools import Extension, setup

FOLDERS = {"mixerhub": "hub", "mixerhub.adapters": "adapters",
           "mixerhub.templates": "templates", "mixerhub.proxy_filter": "proxy_filter"}


def packages() -> list[str]:
    found = []
    for package, folder in FOLDERS.items():
        for init in sorted(Path(folder).rglob("__init__.py")):
            parts = init.parent.relative_to(folder).parts
            found.append(".".join((package, *parts)))
    return found


# Report decoding in C (hub/attributes/_wire.c). Optional: without a compiler the install
# goes on and the same decoding runs in Python (CI requires the extension: tests/hub).
WIRE = Extension("mixerhub.attributes._wire", ["hub/attributes/_wire.c"], optional=True,
                 extra_compile_args=["-O2"])

# Kafka record values in C (adapters/kafka/_render.c), optional in the same way.
RENDER = Extension("mixerhub.adapters.kafka._render", ["adapters/kafka/_render.c"],
                   optional=True, extra_compile_args=["-O2"])

setup(package_dir=FOLDERS, packages=packages(), ext_modules=[WIRE, RENDER])
