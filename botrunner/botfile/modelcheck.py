"""Rules for `model.name` and `model.max_tokens`, from the model catalogue.

A misspelt model name or a `max_tokens` above what the model allows passes the schema and
fails on the first real message. A model the catalogue does not know is still allowed (new
models appear every month): Anthropic bots get a warning, with a did-you-mean when the name is
close to a known one; other providers serve models the catalogue does not list, so they are
warned only about a clear near-miss of a known name.
"""

from __future__ import annotations

from botrunner.botfile.filecheck import FileCheck
from botrunner.providers.catalogue import catalogue

__all__ = ["check_model_name"]


def check_model_name(check: FileCheck) -> None:
    name, provider = check.get(("model", "name")), check.get(("model", "provider")) or "anthropic"
    if not isinstance(name, str) or not check.ok(("model", "name")):
        return
    known = catalogue()
    model = known.find(name)
    if model is None:
        close = known.suggest(name, cutoff=0.8 if provider == "anthropic" else 0.9)
        if close:
            check.warn(
                check.src.node_pos(("model", "name")),
                f'"{name}" is not a model botrunner knows',
                f'Did you mean "{close[0]}"? (A new model is fine: this is only a warning.)',
            )
        elif provider == "anthropic":
            check.warn(
                check.src.node_pos(("model", "name")),
                f'"{name}" is not in botrunner\'s model catalogue',
                "Check the spelling against the model table in docs/bot-reference.md; a model "
                "newer than this botrunner is fine (this is only a warning).",
            )
        return
    max_tokens = check.get(("model", "max_tokens"))
    if (
        isinstance(max_tokens, int)
        and check.ok(("model", "max_tokens"))
        and model.max_output_tokens
        and max_tokens > model.max_output_tokens
    ):
        check.error(
            check.src.node_pos(("model", "max_tokens")),
            f"model.max_tokens is {max_tokens}, above the most {name} can write "
            f"({model.max_output_tokens} tokens)",
            f"Use max_tokens: {model.max_output_tokens} or less.",
        )
