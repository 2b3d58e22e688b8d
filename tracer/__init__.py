"""oomtrace: what was OOM-killed, in which container, and why."""

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def _version() -> str:
    """The installed package's version; pyproject.toml says it, once."""
    try:
        return version("oomtrace")
    except PackageNotFoundError:  # a checkout run in place, not installed (as the VM suite runs it)
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        found = re.search(r'^version = "([^"]+)"', pyproject.read_text(), re.M) if pyproject.exists() else None
        return found.group(1) if found else "0+unknown"


__version__ = _version()
