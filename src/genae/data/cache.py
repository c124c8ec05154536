"""Where genae keeps what it fetches or derives: one directory per dataset or kind of file."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(name: str) -> Path:
    """The cache directory for `name`: ``$GENAE_DATA_DIR/<name>``, or ``~/.cache/genae/<name>``
    when the variable is unset or empty."""
    root = os.environ.get("GENAE_DATA_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "genae"
    return base / name
