"""Rules for the `model` settings that the schema cannot say: what each provider accepts, the
model catalogue, and how `base_url` and `api_key` may be written.

- A key only one provider understands (`reasoning_effort` is openai's) is an error under the
  other, naming the provider it belongs to; `temperature` goes up to 1 with anthropic, 2 with
  openai.
- `model.name` and `model.max_tokens` are checked against the model catalogue. A model the
  catalogue does not know is still allowed (new models appear every month): Anthropic bots get
  a warning, with a did-you-mean when the name is close to a known one; other providers serve
  models the catalogue does not list, so they are warned only about a clear near-miss of a
  known name. A `max_tokens` above what the model allows is an error.
- `base_url` is a whole http(s) address, or `${NAME}` / `${NAME:-default}` standing for the
  whole address (the variable must not build only part of it); plain http:// to a host other
  than this machine is a warning: the conversation and the key would travel unencrypted.
- A key written in the file is a warning (anyone who can read the file can use it).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from botrunner.botfile.filecheck import FileCheck, PathT
from botrunner.providers.catalogue import catalogue
from botrunner.templating.envrefs import ENV_REF

__all__ = ["PROVIDER_RULES", "check_model", "check_model_name"]


@dataclass(frozen=True, slots=True)
class ProviderRules:
    key_env: str  # the variable the provider's SDK reads the key from
    max_temperature: float
    own_keys: frozenset[str] = frozenset()  # model keys no other provider takes


PROVIDER_RULES = {
    "anthropic": ProviderRules("ANTHROPIC_API_KEY", 1.0),
    "openai": ProviderRules("OPENAI_API_KEY", 2.0, frozenset({"reasoning_effort"})),
}

_URL = re.compile(r"https?://[^/?#\s]+", re.IGNORECASE)
_BASE_URL: PathT = ("model", "base_url")


def check_model(check: FileCheck) -> None:
    model = check.get(("model",))
    if not isinstance(model, dict):
        return
    provider = model.get("provider", "anthropic")
    rules = PROVIDER_RULES.get(provider) if check.ok(("model", "provider")) else None
    if rules is not None:
        _check_provider_keys(check, model, provider, rules)
    _check_base_url(check)
    key = check.get(("model", "api_key"))
    if check.ok(("model", "api_key")) and isinstance(key, str) and "${" not in key:
        variable = rules.key_env if rules else "ANTHROPIC_API_KEY"
        check.warn(
            check.src.node_pos(("model", "api_key")),
            "the API key is written in the file, where anyone who can read it can use it",
            f"Read it from the environment instead: api_key: ${{{variable}}}",
        )


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


def _check_provider_keys(
    check: FileCheck, model: dict[str, object], provider: str, rules: ProviderRules
) -> None:
    uses = provider if "provider" in model else f"{provider} (the default)"
    for key in model:
        owner = next(
            (name for name, other in PROVIDER_RULES.items() if key in other.own_keys), None
        )
        if owner is None or owner == provider or not check.ok(("model", key)):
            continue
        check.error(
            check.src.key_pos(("model", key)),
            f"model.{key} applies only to provider {owner}; this bot uses {uses}",
            f"Remove {key}, or set provider: {owner}.",
        )
    temperature = model.get("temperature")
    if (
        check.ok(("model", "temperature"))
        and isinstance(temperature, int | float)
        and temperature > rules.max_temperature
    ):
        others = "; ".join(
            f"with {name} up to {r.max_temperature:g}"
            for name, r in PROVIDER_RULES.items()
            if name != provider
        )
        check.error(
            check.src.node_pos(("model", "temperature")),
            f"model.temperature must be at most {rules.max_temperature:g} with provider "
            f"{provider}, not {temperature:g}",
            f"With {provider} it goes from 0 to {rules.max_temperature:g}; {others}.",
        )


def _check_base_url(check: FileCheck) -> None:
    base = check.get(_BASE_URL)
    if not check.ok(_BASE_URL) or not isinstance(base, str):
        return
    pos = check.src.node_pos(_BASE_URL)
    if "${" not in base:
        _check_address(check, pos, base, "model.base_url")
        return
    ref = ENV_REF.fullmatch(base.strip())
    if ref is None:
        if ENV_REF.search(base):  # (a malformed reference is reported by envcheck)
            check.error(
                pos,
                "model.base_url may use ${NAME} only for the whole address",
                "Put the whole address in the variable (base_url: ${LLM_BASE_URL}), or write "
                "the address itself.",
            )
        return
    name, default = ref["name"], ref["default"]
    if default:
        _check_address(check, pos, default, f"model.base_url: the default of ${{{name}}}")
    value = check.env.get(name)
    if value:  # the address it will be where this runs (never shown: values stay private)
        _check_address(check, pos, value, f"model.base_url: the value of {name}", show=False)


def _check_address(
    check: FileCheck, pos: tuple[int, int], url: str, what: str, *, show: bool = True
) -> None:
    if not _URL.match(url):
        check.error(
            pos,
            f"{what} must be an address starting with https:// (or http://)"
            + (f', not "{_shown(url)}"' if show else ""),
            "Write the full address, e.g. https://gateway.example.com or http://localhost:11434/v1",
        )
        return
    parts = urlsplit(url)
    if parts.scheme.lower() == "http" and not _loopback(parts.hostname or ""):
        check.warn(
            pos,
            f"{what} is plain http:// to {parts.hostname}: the conversation and the API key "
            "would travel unencrypted",
            "Use https://; plain http:// is for a model server on this machine (localhost).",
        )


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _shown(value: str) -> str:
    return value if len(value) <= 60 else value[:57] + "..."
