"""Maps the card's folders onto one import package, ``mixerhub`` (see docs/architecture.md).

Everything else about the distribution lives in pyproject.toml; this file only lists the
packages, which pyproject's static ``packages.find`` cannot rename.
"""

from pathlib import Path

from setuptools import setup

FOLDERS = {"mixerhub": "hub", "mixerhub.adapters": "adapters",
           "mixerhub.templates": "templates", "mixerhub.proxy_filter": "proxy_filter"}


def packages() -> list[str]:
    found = []
    for package, folder in FOLDERS.items():
        for init in sorted(Path(folder).rglob("__init__.py")):
            parts = init.parent.relative_to(folder).parts
            found.append(".".join((package, *parts)))
    return found


setup(package_dir=FOLDERS, packages=packages())
