"""Secrets from the config file, an environment variable or a file.

For a secret named `password`, a config section may give `password = "..."`,
`password_env = "VAR"` or `password_file = "/run/secrets/x"`. The file and environment
forms keep secrets out of the config file itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from chatbot.errors import UserError


class SecretError(UserError):
    pass


def resolve_secret(section: dict[str, Any], name: str, where: str) -> str | None:
    given = [k for k in (name, f"{name}_env", f"{name}_file") if section.get(k)]
    if len(given) > 1:
        raise SecretError(f"[{where}] sets {' and '.join(given)}: give only one")
    if section.get(name):
        return str(section[name])
    var = section.get(f"{name}_env")
    if var:
        value = os.environ.get(str(var))
        if not value:
            raise SecretError(f"[{where}] {name}_env: environment variable {var} is not set")
        return value
    path = section.get(f"{name}_file")
    if path:
        try:
            return Path(str(path)).expanduser().read_text(encoding="utf-8").strip()
        except OSError as err:
            raise SecretError(f"[{where}] {name}_file: cannot read {path}: {err.strerror}") from None
    return None
