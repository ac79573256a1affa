"""The one place that reads a bot file: YAML -> schema check -> semantic rules -> frozen `Bot`.

Problems are reported all at once, each with the file, line and column of the offending text,
a message in plain words and a hint. Schema problems come first, then semantic ones; semantic
checks skip the parts that already failed the schema.

The passes live in their own modules: `schemacheck` (the schema), `envcheck` (`${NAME}`
references), `modelcheck` (the model settings, per provider), `templatecheck` (variables and
the system prompt) and `toolcheck` (tools); `filecheck` holds what they share.

This module (and everything it imports) must stay light: `botrunner validate` runs it on
hundreds of files, so no SDK or web stack here.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from botrunner.bot import Bot, Limits, Memory, Model, PerUser, Retry, Tool, UserAttribute
from botrunner.botfile import yamlsrc
from botrunner.botfile.envcheck import check_env_refs, check_env_set
from botrunner.botfile.filecheck import FileCheck, display
from botrunner.botfile.modelcheck import check_model, check_model_name
from botrunner.botfile.problems import Problem, format_text
from botrunner.botfile.rendercheck import check_system_renders, check_tool_renders, sample_user
from botrunner.botfile.schemacheck import check_schema
from botrunner.botfile.templatecheck import SYSTEM_VARIABLES, check_system, check_variables
from botrunner.botfile.toolcheck import check_tools
from botrunner.botfile.usercheck import check_user_attributes
from botrunner.templating.envrefs import ENV_REF, substitute_env
from botrunner.templating.template import Template

__all__ = ["BotFileError", "SYSTEM_VARIABLES", "check_file", "display", "load_bot", "read_yaml"]

log = logging.getLogger(__name__)


class BotFileError(Exception):
    """A bot file that cannot be loaded. `.problems` holds every problem found (errors first)."""

    def __init__(self, path: str | os.PathLike[str], problems: list[Problem]) -> None:
        self.path = str(path)
        self.problems = problems
        errors = [p for p in problems if p.is_error]
        count = f"{len(errors)} error{'s' if len(errors) != 1 else ''}"
        super().__init__(f"{self.path}: {count}\n{format_text(errors)}".rstrip("\n"))


def load_bot(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Bot:
    """Load a bot file, or raise `BotFileError` listing every problem. Warnings are logged."""
    bot, problems = check_file(path, env=env)
    if bot is None:
        raise BotFileError(path, problems)
    for problem in problems:
        log.warning("%s", problem)
    return bot


def check_file(
    path: str | os.PathLike[str], *, strict: bool = False, env: Mapping[str, str] | None = None
) -> tuple[Bot | None, list[Problem]]:
    """Check a bot file. Returns the `Bot` (None if there is any error) and all problems.

    `strict` also reports each `${NAME}` without a default whose variable is unset or empty
    (by name; values are never shown). Missing variables are not errors otherwise.
    """
    try:
        return _check_file(path, strict, os.environ if env is None else env)
    except Exception as exc:  # noqa: BLE001 - one file must never stop validate or a reload
        # Every known problem is reported by the passes; this is a botrunner bug, reported on
        # the file (so `serve` keeps the previous version) and logged with its traceback.
        log.exception("checking %s failed unexpectedly", path)
        reason = " ".join(str(exc).split())[:200]
        return None, [
            Problem(
                str(path),
                1,
                1,
                "error",
                f"botrunner could not check this file ({type(exc).__name__}: {reason})",
                "This is a bug in botrunner, not a rule of the file format: undo your last "
                "change to find what triggers it, and report it with the file.",
            )
        ]


def _check_file(
    path: str | os.PathLike[str], strict: bool, env: Mapping[str, str]
) -> tuple[Bot | None, list[Problem]]:
    raw, src, problems = read_yaml(path)
    if src is None:
        return None, problems
    check = FileCheck(src, env)
    check_schema(check)
    check_env_refs(check)
    check_model(check)
    check_model_name(check)
    variables = check_variables(check)
    before = _errors(check)
    system = check_system(check, variables)
    user_attributes = check_user_attributes(check, system)
    if system is not None and _errors(check) == before:
        check_system_renders(check, system, variables, sample_user(user_attributes))
    tools = check_tools(check)
    for index, tool in _indexed(check, tools):
        check_tool_renders(check, index, tool)
    if strict:
        check_env_set(check)
    key = lambda p: (p.line, p.column)  # noqa: E731
    problems = (
        src.problems + sorted(check.schema_problems, key=key) + sorted(check.problems, key=key)
    )
    if any(p.is_error for p in problems):
        return None, problems
    assert system is not None
    version = hashlib.sha256(raw).hexdigest()[:12]
    bot = _build(check, Path(path), version, variables, system, tools, user_attributes)
    return bot, problems


def _errors(check: FileCheck) -> int:
    return sum(p.is_error for p in check.problems)


def _indexed(check: FileCheck, tools: list[Tool]) -> list[tuple[int, Tool]]:
    """Each tool with its index under `tools:` (tools that failed a rule are left out)."""
    data = check.get(("tools",)) or []
    index = {item.get("name"): i for i, item in enumerate(data) if isinstance(item, dict)}
    return [(index[tool.name], tool) for tool in tools]


def read_yaml(
    path: str | os.PathLike[str], *, empty_hint: str | None = None
) -> tuple[bytes, yamlsrc.Source | None, list[Problem]]:
    """Read a YAML file with a position for every value: its bytes, the parsed source (None
    when there is nothing to check) and the problems found so far."""
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return b"", None, [Problem(file, 1, 1, "error", f"cannot read the file: {reason}", "")]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return (
            raw,
            None,
            [
                Problem(
                    file,
                    line,
                    1,
                    "error",
                    "the file is not UTF-8 text",
                    "Save the file with UTF-8 encoding (every modern editor can).",
                )
            ],
        )
    src = yamlsrc.parse(text, file, empty_hint=empty_hint)
    if src.data is None and src.problems:
        return raw, None, src.problems
    return raw, src, []


def _build(
    check: FileCheck,
    path: Path,
    version: str,
    variables: dict[str, Any],
    system: Template,
    tools: list[Tool],
    user_attributes: dict[str, UserAttribute],
) -> Bot:
    """The `Bot` of a file without errors: the schema guarantees every value's type."""
    data = check.src.data
    model = data["model"]
    api_key = model.get("api_key")
    api_key_env = None
    if api_key is not None:
        ref = ENV_REF.search(api_key)
        api_key_env = ref["name"] if ref else None
        api_key = substitute_env(api_key, check.env) or None
    base_url = model.get("base_url")
    if base_url is not None:
        base_url = substitute_env(base_url, check.env) or None
    memory = data.get("memory", {})
    limits = data.get("limits", {})
    per_user = limits.get("per_user", {})
    retry = data.get("retry", {})
    temperature = model.get("temperature")
    # Only values that come from the environment are secret: a `${NAME:-default}` default is
    # written in the file for everyone to read, and redacting it would garble tool results.
    secrets = {check.env.get(ref.name, "") for ref in check.env_refs} - {""}
    return Bot(
        name=data["name"],
        model=Model(
            name=model["name"],
            max_tokens=model.get("max_tokens", 1024),
            provider=model.get("provider", "anthropic"),
            temperature=float(temperature) if temperature is not None else None,
            reasoning_effort=model.get("reasoning_effort"),
            base_url=base_url,
            api_key=api_key,
            api_key_env=api_key_env,
            # YAML 1.1 reads an unquoted `off` as false; the schema accepts both.
            cache="off" if model.get("cache", "auto") in ("off", False) else "auto",
            cache_ttl=model.get("cache_ttl", "5m"),
        ),
        system=system,
        path=path,
        version=version,
        description=data.get("description", ""),
        variables=variables,
        greeting=data.get("greeting"),
        user_attributes=user_attributes,
        memory=Memory(
            strategy=memory.get("strategy", "window"),
            max_turns=memory.get("max_turns", 20),
            retrieve_turns=memory.get("retrieve_turns", 3),
            summarize_every=memory.get("summarize_every", 5),
        ),
        limits=Limits(
            max_message_chars=limits.get("max_message_chars", 4000),
            per_user=PerUser(
                requests_per_minute=per_user.get("requests_per_minute"),
                tokens_per_day=per_user.get("tokens_per_day"),
            ),
            max_tool_rounds=limits.get("max_tool_rounds", 5),
            max_tool_calls_per_reply=limits.get("max_tool_calls_per_reply", 8),
        ),
        retry=Retry(
            max_retries=retry.get("max_retries", 3),
            timeout_seconds=float(retry.get("timeout_seconds", 60.0)),
        ),
        tools=tuple(tools),
        env_refs=tuple(check.env_refs),
        secrets=frozenset(secrets),
    )
