"""Rules for the templates in a bot file: syntax errors and undefined names, located in the
file, and the system prompt with the variables it may use."""

from __future__ import annotations

from typing import Any

from botrunner.botfile.filecheck import FileCheck, PathT, closest, display
from botrunner.templating.template import Template, TemplateProblem

__all__ = [
    "RESERVED_VARIABLES",
    "SYSTEM_VARIABLES",
    "check_system",
    "check_variables",
    "report_template_problem",
    "report_undefined",
]

# Names the engine fills in when it renders `system`; `user.x` is checked by usercheck.
SYSTEM_VARIABLES = ("today", "now", "bot", "user")
RESERVED_VARIABLES = frozenset((*SYSTEM_VARIABLES, "input"))


def report_template_problem(check: FileCheck, path: PathT, exc: TemplateProblem) -> None:
    path = (*path, *exc.path)
    if exc.column is None:
        pos = check.src.node_pos(path)
    else:
        pos = check.src.text_pos(path, exc.line, exc.column)
    check.error(pos, f"{display(path)}: {exc.message}", exc.hint)


def report_undefined(
    check: FileCheck, path: PathT, found: list[tuple[str, int, int]], allowed: set[str], hint: str
) -> None:
    """An error for each name in `found` (name, line, column in the text) not in `allowed`."""
    for name, line, col in found:
        if name in allowed:
            continue
        close = closest(name, sorted(allowed))
        extra = f' Did you mean "{close}"?' if close else ""
        first = hint
        if name == "input" and path[0] != "tools":
            first = "input is only available in a tool's http settings. " + hint
        check.error(
            check.src.text_pos(path, line, col),
            f'undefined variable "{name}" in {display(path)}',
            first + extra,
        )


def check_variables(check: FileCheck) -> dict[str, Any]:
    """The author's variables for `system`, without their x- notes."""
    variables = check.get(("variables",))
    if not isinstance(variables, dict):
        return {}
    if check.ok(("variables",)):
        for name in variables:
            if name in RESERVED_VARIABLES:
                check.error(
                    check.src.key_pos(("variables", name)),
                    f'the variable name "{name}" is reserved',
                    "botrunner fills in today, now, bot and user itself (and input in tools); "
                    "pick another name.",
                )
    return {k: v for k, v in variables.items() if not k.startswith("x-")}


def check_system(check: FileCheck, variables: dict[str, Any]) -> Template | None:
    source = check.get(("system",))
    if not check.ok(("system",)) or not isinstance(source, str):
        return None
    try:
        template = Template(source, check.location(("system",)))
    except TemplateProblem as exc:
        report_template_problem(check, ("system",), exc)
        return None
    allowed = set(SYSTEM_VARIABLES) | set(variables)
    own = f" and your variables ({', '.join(variables)})" if variables else ""
    found = template.undeclared()
    report_undefined(
        check,
        ("system",),
        found,
        allowed,
        f"In system you can use today, now, bot, user.<attribute>{own}; "
        "add other values under variables:.",
    )
    _check_cacheable(check, found)
    return template


def _check_cacheable(check: FileCheck, found: list[tuple[str, int, int]]) -> None:
    """`now` changes the system prompt every minute, so with prompt caching on (the default)
    it is never read from the cache: every message pays for the whole prompt again."""
    if check.get(("model", "cache")) in ("off", False):
        return
    for name, line, col in found:
        if name == "now":
            check.warn(
                check.src.text_pos(("system",), line, col),
                "system uses now, which changes every minute: the system prompt is then never "
                "read from the prompt cache and every message pays for all of it",
                "Use today (it changes once a day) if the date is enough, or turn caching off "
                "with model: cache: off.",
            )
