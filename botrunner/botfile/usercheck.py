"""The user attributes a bot accepts from clients: its `user_attributes:` block, or, without
one, the attributes `system` reads (`user.name`), each up to the default length.

Either way the template and the declarations agree: with a block, a `user.x` it does not
list is an error at its line; without one, `system` may not use `user` as a whole (printed,
looped over), since nothing would say which attributes that lets in.
"""

from __future__ import annotations

from botrunner.bot import UserAttribute
from botrunner.botfile.filecheck import FileCheck, closest
from botrunner.templating import Template

__all__ = ["DEFAULT_MAX_LENGTH", "check_user_attributes"]

DEFAULT_MAX_LENGTH = 200
_EXAMPLE = "user_attributes: {name: {max_length: 80}}"


def check_user_attributes(check: FileCheck, system: Template | None) -> dict[str, UserAttribute]:
    """The accepted attributes by name (never `id`: the end user's id is always there)."""
    fields, whole = system.fields("user") if system is not None else ([], [])
    data = check.get(("user_attributes",))
    if "user_attributes" not in (check.src.data or {}):
        for line, col in whole:
            check.error(
                check.src.text_pos(("system",), line, col),
                "system uses user as a whole; list the attributes it may use under "
                "user_attributes:",
                "Without user_attributes:, clients may send only the attributes system reads "
                f"as user.<name>. Add, for example, {_EXAMPLE}",
            )
        return {name: UserAttribute() for name, _, _ in fields if name != "id"}
    if not isinstance(data, dict) or not check.ok(("user_attributes",)):
        return {}
    accepted: dict[str, UserAttribute] = {}
    for name, spec in data.items():
        if name.startswith("x-"):
            continue
        if name == "id":
            check.error(
                check.src.key_pos(("user_attributes", "id")),
                "user.id is always available: it is the end user's id, not an attribute",
                "Remove id here. Clients name the end user with user.id when they may "
                "(no API keys, or a trusted key).",
            )
            continue
        spec = spec or {}
        accepted[name] = UserAttribute(
            max_length=spec.get("max_length", DEFAULT_MAX_LENGTH),
            description=spec.get("description", ""),
        )
    listed = ", ".join(accepted) or "none"
    for name, line, col in fields:
        if name == "id" or name in accepted:
            continue
        close = closest(name, list(accepted))
        check.error(
            check.src.text_pos(("system",), line, col),
            f"user.{name} is not declared under user_attributes",
            f"Add {name}: under user_attributes: (clients may send only the attributes listed "
            f"there; listed: {listed})." + (f' Did you mean "{close}"?' if close else ""),
        )
    if not whole:
        used = {name for name, _, _ in fields}
        for name in accepted:
            if name not in used:
                check.warn(
                    check.src.key_pos(("user_attributes", name)),
                    f'the user attribute "{name}" is not used in system',
                    f"Use it in system as {{{{ user.{name} }}}}, or remove it: clients may "
                    "send it, but it changes nothing.",
                )
    return accepted
