"""Model providers, looked up by `model.provider`.

Provider modules are imported lazily, on first use: `botrunner validate` imports this package
and must never pay for (or depend on) an SDK. The openai SDK is an optional extra
(`botrunner[openai]`); without it, a bot using it gets a config error saying what to install.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from botrunner.providers.base import PROVIDERS, ProviderError

if TYPE_CHECKING:
    from botrunner.bot import Bot
    from botrunner.providers.base import Provider

# Provider name -> the module that registers it. `replay` and `record` are the providers of
# `botrunner test`: they play a cassette back, or record one around the bot's own provider.
MODULES: dict[str, str] = {
    "anthropic": "botrunner.providers.anthropic",
    "openai": "botrunner.providers.openai",
    "replay": "botrunner.providers.replay",
    "record": "botrunner.providers.replay",
}
# Provider name -> (the SDK it needs, the pip requirement that brings it).
SDKS: dict[str, tuple[str, str]] = {
    "anthropic": ("anthropic", "botrunner"),
    "openai": ("openai", "botrunner[openai]"),
}

# Not for bot files: named only by `botrunner test`.
_TEST_ONLY = {"replay", "record"}

_cache: dict[tuple[object, ...], Provider] = {}


def _cache_key(bot: Bot) -> tuple[object, ...]:
    model, retry = bot.model, bot.retry
    # base_url and api_key decide the client (and its connection pool); the rest is what a
    # provider reads from the bot, so a hot-reloaded bot that changes them gets a fresh one.
    return (model.provider, model.base_url, model.api_key, model.api_key_env, retry.max_retries)


def get_provider(bot: Bot) -> Provider:
    """The provider for `bot`, shared by every bot with the same provider and connection
    settings (so connections are pooled across turns and conversations)."""
    key = _cache_key(bot)
    provider = _cache.get(key)
    if provider is not None:
        return provider
    provider = _cache[key] = new_provider(bot)
    return provider


def new_provider(bot: Bot, name: str | None = None, **options: Any) -> Provider:
    """A provider of its own (not shared): `name` from the registry (default: the bot's
    `model.provider`), built with `options` (e.g. the cassette of `replay`)."""
    name = name or bot.model.provider
    factory = PROVIDERS.get(name)
    if factory is None:
        module = MODULES.get(name)
        if module is None:
            known = ", ".join(sorted((set(MODULES) | set(PROVIDERS)) - _TEST_ONLY))
            raise ProviderError(
                "config", f"Unknown model provider {name!r} (model.provider); known: {known}."
            )
        import_provider(name)
        factory = PROVIDERS[name]
    return factory(bot, **options)


def import_provider(name: str) -> None:
    """Import the module of provider `name` (registering it); a missing SDK is a config error
    that names the package to install."""
    try:
        importlib.import_module(MODULES[name])
    except ModuleNotFoundError as exc:
        sdk, requirement = SDKS.get(name, (None, ""))
        if sdk is None or exc.name is None or exc.name.split(".")[0] != sdk:
            raise
        raise ProviderError(
            "config",
            f"The {name} provider (model.provider) needs the {sdk} package, which is not "
            f"installed: pip install '{requirement}'.",
        ) from None


async def aclose_all() -> None:
    """Close every cached provider (their HTTP clients); for shutdown and tests."""
    providers = list(_cache.values())
    _cache.clear()
    for provider in providers:
        await provider.aclose()


__all__ = [
    "MODULES",
    "ProviderError",
    "aclose_all",
    "get_provider",
    "import_provider",
    "new_provider",
]
