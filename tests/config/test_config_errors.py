"""One tiny YAML per config error; its first line holds the exact expected message."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixerhub.config.files import ConfigError
from mixerhub.config.loader import load_config
from mixerhub.plugins import load_plugins

ERRORS = Path(__file__).parent / "errors"
FILES = sorted(ERRORS.glob("*.yaml"))


@pytest.fixture(scope="module")
def plugins():
    return load_plugins()


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_config_error_message(path: Path, plugins) -> None:
    header = path.read_text().splitlines()[0]
    kind, _, expected = header.removeprefix("# ").partition(": ")
    with pytest.raises(ConfigError) as err:
        load_config([path], plugins)
    message = str(err.value).replace(str(ERRORS) + "/", "")
    if kind == "error":
        assert message == expected
    else:
        assert kind == "error-prefix"
        assert message.startswith(expected) and len(message) > len(expected) + 5
