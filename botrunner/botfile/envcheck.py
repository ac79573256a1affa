"""Rules for `${NAME}` environment references (the model settings that hold them are checked
in `modelcheck`).

The model must never see a secret, so references are allowed only in model.base_url,
model.api_key and a tool's http settings; everywhere else they are errors.
"""

from __future__ import annotations

from botrunner.bot import EnvRef, Location
from botrunner.botfile.filecheck import FileCheck, PathT, display, texts
from botrunner.templating.envrefs import ANY_ENV_REF, ENV_REF

__all__ = ["check_env_refs", "check_env_set"]


def _env_allowed(path: PathT) -> bool:
    if path[:1] == ("model",) and len(path) == 2 and path[1] in ("base_url", "api_key"):
        return True
    return len(path) >= 4 and path[0] == "tools" and path[2] == "http" and path[3] != "method"


def _is_open(path: PathT) -> bool:
    """Inside a map of the author's own data, where x- keys are data, not notes."""
    if "input_schema" in path:
        return True
    return len(path) >= 4 and path[2] == "http" and path[3] in ("params", "headers", "body")


def check_env_refs(check: FileCheck) -> None:
    """Report misplaced or malformed references; collect the good ones in `check.env_refs`."""
    for path, value in texts(check.src.data, (), _is_open):
        if "${" not in value or any(path[: len(bad)] == bad for bad in check.failed):
            continue
        allowed = _env_allowed(path)
        for match in ANY_ENV_REF.finditer(value):
            pos = check.offset_pos(path, value, match.start())
            text = match.group()
            if not allowed:
                check.error(
                    pos,
                    f"{text} reads an environment variable, which is not allowed in {display(path)}",
                    "The model must never see a secret: use ${...} only in model.base_url, "
                    "model.api_key and a tool's http settings.",
                )
                continue
            ref = ENV_REF.fullmatch(text)
            if ref is None:
                check.error(
                    pos,
                    f'"{text}" is not a valid environment variable reference',
                    "Write ${NAME} or ${NAME:-default}; NAME may use letters, digits and _.",
                )
                continue
            check.env_refs.append(
                EnvRef(ref["name"], ref["default"], Location(check.src.file, *pos))
            )


def check_env_set(check: FileCheck) -> None:
    """For `--strict`: each `${NAME}` without a default whose variable is unset or empty."""
    seen: set[str] = set()
    for ref in check.env_refs:
        if ref.default is not None or ref.name in seen or check.env.get(ref.name):
            continue
        seen.add(ref.name)
        check.error(
            (ref.location.line, ref.location.column),
            f"the environment variable {ref.name} is not set",
            f"Set {ref.name} where botrunner runs (CI secrets, the server's environment), "
            f"or give a default: ${{{ref.name}:-value}}.",
        )
