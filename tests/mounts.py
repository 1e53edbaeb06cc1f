"""A folder mounted the way Kubernetes mounts a ConfigMap or a Secret: each file is a link
``name -> ..data/name``, ``..data`` a link to the current version's folder, and an update
replaces ``..data`` in one rename (what the hub's and the proxy's file checks must see)."""

from __future__ import annotations

import os
from pathlib import Path


class KubeMount:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir()
        self._versions = 0

    def path(self, name: str) -> str:
        return str(self.folder / name)

    def update(self, files: dict[str, str | bytes]) -> None:
        """A new version holding ``files``, swapped in at once."""
        self._versions += 1
        version = self.folder / f"..v{self._versions}"
        version.mkdir()
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            (version / name).write_bytes(data)
        link = self.folder / "..data_tmp"
        link.symlink_to(version.name)
        os.replace(link, self.folder / "..data")
        for name in files:
            if not (self.folder / name).is_symlink():
                (self.folder / name).symlink_to(f"..data/{name}")
