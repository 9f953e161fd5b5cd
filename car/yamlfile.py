"""Reading a YAML file with errors a user can act on: the file named, one line."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


def read_yaml(path: str | os.PathLike[str], error: type[Exception] = ValueError) -> Any:
    """The parsed document; `error` (a ValueError subclass of the caller's) on a missing file or bad YAML."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
