"""`${NAME}` / `${NAME:-default}` references to environment variables in a bot file.

They are resolved once, at load time. In templates they are swapped for a private context
variable before compiling (`${X}` -> `{{ __env[0] }}`) rather than pasted into the source, so
a secret containing "{{" is never compiled and a "${X}" typed by the model is never expanded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["ANY_ENV_REF", "ENV_REF", "Trusted", "resolve_env", "rewrite_env", "substitute_env"]

# `${NAME}` or `${NAME:-default}`; anything else starting with "${" is reported by the loader.
ENV_REF = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
ANY_ENV_REF = re.compile(r"\$\{[^}\n]*\}?")


class Trusted(str):
    """Text the author controls (a resolved environment variable): never encoded."""

    __slots__ = ()


def resolve_env(name: str, default: str | None, env: Mapping[str, str]) -> str:
    """Shell semantics: `${X:-d}` uses d when X is unset or empty; `${X}` unset is empty."""
    value = env.get(name)
    if value:
        return value
    return default or ""


def substitute_env(text: str, env: Mapping[str, str]) -> str:
    """`text` with every reference replaced by its value, for settings that are not templates."""
    return ENV_REF.sub(lambda m: resolve_env(m["name"], m["default"], env), text)


def rewrite_env(source: str, env: Mapping[str, str]) -> tuple[str, list[Trusted]]:
    """Template source with `${X}` turned into `{{ __env[i] }}`, and the values by index."""
    values: list[Trusted] = []

    def replace(match: re.Match[str]) -> str:
        values.append(Trusted(resolve_env(match["name"], match["default"], env)))
        return f"{{{{ __env[{len(values) - 1}] }}}}"

    return ENV_REF.sub(replace, source), values
