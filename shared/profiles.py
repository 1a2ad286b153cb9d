"""Named profiles in the user's config folder: settings that follow a user into every folder.

``~/.config/srdb/`` (``$XDG_CONFIG_HOME/srdb`` when that is set) holds ``profiles/<name>.env`` — the
same ``SRDB_*=value`` lines as ``.srdb/local.env`` — and ``current``, the name of the profile in use
(``srdb config use NAME``). ``srdb --profile NAME`` picks one for a single command.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from shared.errors import ClientSideError

DEFAULT_PROFILE = "default"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def config_home(environ: Mapping[str, str] | None = None) -> Path:
    """The user's srdb config folder. An environment with neither ``XDG_CONFIG_HOME`` nor ``HOME`` (e.g.
    ``Settings.load(environ={})``) has none: a path that never exists, so no profile is read."""
    env = os.environ if environ is None else environ
    if env.get("XDG_CONFIG_HOME"):
        return Path(env["XDG_CONFIG_HOME"]) / "srdb"
    if env.get("HOME"):
        return Path(env["HOME"]) / ".config" / "srdb"
    return Path("/nonexistent/srdb-config")


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ClientSideError(f"profile name {name!r}: letters, digits, '.', '_' and '-', at most 64, "
                              "starting with a letter or digit")
    return name


def profile_path(name: str, environ: Mapping[str, str] | None = None) -> Path:
    return config_home(environ) / "profiles" / f"{check_name(name)}.env"


def exists(name: str, environ: Mapping[str, str] | None = None) -> bool:
    return bool(_NAME.fullmatch(name)) and profile_path(name, environ).is_file()


def current(environ: Mapping[str, str] | None = None) -> str | None:
    """The profile ``srdb config use`` chose, when its file is still there."""
    try:
        name = (config_home(environ) / "current").read_text().strip()
    except OSError:
        return None
    return name if name and exists(name, environ) else None


def use(name: str, environ: Mapping[str, str] | None = None) -> None:
    if not exists(name, environ):
        raise ClientSideError(f"no profile {name}: `srdb config save {name}` makes it from the settings in effect")
    home = config_home(environ)
    home.mkdir(parents=True, exist_ok=True)
    (home / "current").write_text(name + "\n")


def names(environ: Mapping[str, str] | None = None) -> list[str]:
    folder = config_home(environ) / "profiles"
    return sorted(p.stem for p in folder.glob("*.env") if _NAME.fullmatch(p.stem)) if folder.is_dir() else []
