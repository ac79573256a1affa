"""The model catalogue: what botrunner knows about each model (limits, the minimum cacheable
prompt length, list prices), read from `models.json` beside this module.

The data is the one source for prompt caching (where a cache breakpoint is worth placing), for
cost (`botrunner usage`) and for `validate` (model names, `max_tokens`). A model that is not in
the catalogue is allowed: it simply has no limits and no price.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

PRICE_FIELDS = ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output")


class CatalogueError(ValueError):
    """The catalogue or a price file is malformed; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Prices:
    """US dollars per million tokens."""

    input: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float
    output: float


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """The tokens of one or many turns, split the way they are billed. `cache_write` is every
    token written to the cache; `cache_write_1h` is the part of it written with the 1-hour TTL
    (the rest was written with the 5-minute TTL)."""

    input: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0
    output: int = 0

    @property
    def prompt(self) -> int:
        """Every prompt token, however billed."""
        return self.input + self.cache_write + self.cache_read


@dataclass(frozen=True, slots=True)
class LongPromptPrices:
    """Prices that replace the normal ones, on every token of a request, when its prompt
    (input + cache writes + cache reads) is longer than `above_tokens`."""

    above_tokens: int
    prices: Prices


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    name: str
    provider: str
    status: str
    aliases: tuple[str, ...]
    context_window: int
    max_output_tokens: int
    min_cacheable_tokens: int
    prices: Prices | None
    long_prompt: LongPromptPrices | None = None
    note: str = ""

    def prices_for(self, prompt_tokens: int) -> Prices | None:
        """The prices a request with this many prompt tokens pays."""
        if self.long_prompt is not None and prompt_tokens > self.long_prompt.above_tokens:
            return self.long_prompt.prices
        return self.prices

    def cost(self, tokens: TokenCounts) -> float | None:
        """Estimated US dollars for one request's tokens; None when the model has no price."""
        prices = self.prices_for(tokens.prompt)
        return None if prices is None else cost_at(prices, tokens)


def cost_at(prices: Prices, tokens: TokenCounts) -> float:
    """US dollars for `tokens` at `prices`."""
    write_5m = max(tokens.cache_write - tokens.cache_write_1h, 0)
    dollars = (
        tokens.input * prices.input
        + write_5m * prices.cache_write_5m
        + tokens.cache_write_1h * prices.cache_write_1h
        + tokens.cache_read * prices.cache_read
        + tokens.output * prices.output
    )
    return dollars / 1_000_000


class Catalogue:
    """Models by id and alias. Build one with `load_catalogue`; `catalogue()` is the shipped one."""

    def __init__(self, models: list[ModelInfo]) -> None:
        self.models: tuple[ModelInfo, ...] = tuple(models)
        self._by_name: dict[str, ModelInfo] = {}
        for model in self.models:
            for name in (model.id, *model.aliases):
                self._by_name[name] = model

    def find(self, name: str) -> ModelInfo | None:
        return self._by_name.get(name.strip())

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def suggest(self, name: str, *, cutoff: float = 0.8) -> list[str]:
        """Known names close to `name` (a did-you-mean), best first."""
        return difflib.get_close_matches(name.strip(), self.names(), n=3, cutoff=cutoff)

    def with_prices(self, path: str | Path) -> Catalogue:
        """A copy whose prices are overridden by a YAML or JSON file mapping a model name to
        some or all of the price fields. A model the catalogue does not know gets a price
        only when the file gives all five fields."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise CatalogueError(f"{path}: cannot read the price file: {exc}") from None
        if not isinstance(data, dict):
            raise CatalogueError(f"{path}: expected a mapping of model name to prices")
        models = list(self.models)
        for name, fields in data.items():
            where = f"{path}: {name}"
            known = self.find(str(name))
            base = known.prices if known is not None else None
            prices = _prices(fields, where, base)
            if known is not None:
                models[models.index(known)] = replace(known, prices=prices)
            else:
                models.append(_unlisted(str(name), prices))
        return Catalogue(models)


def _unlisted(name: str, prices: Prices) -> ModelInfo:
    # A model priced only by the user's file: no limits are known, so none are applied.
    return ModelInfo(name, name, "", "user", (), 0, 0, 0, prices, note="from a price file")


def _prices(fields: Any, where: str, base: Prices | None = None) -> Prices:
    if not isinstance(fields, dict):
        raise CatalogueError(f"{where}: expected a mapping of {', '.join(PRICE_FIELDS)}")
    unknown = sorted(set(fields) - set(PRICE_FIELDS))
    if unknown:
        raise CatalogueError(
            f"{where}: unknown price field {unknown[0]!r}; use {', '.join(PRICE_FIELDS)}"
        )
    values: dict[str, float] = {}
    for key in PRICE_FIELDS:
        value = fields.get(key, None if base is None else getattr(base, key))
        if value is None:
            raise CatalogueError(f"{where}: missing price field {key!r} (dollars per million)")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise CatalogueError(f"{where}: {key} must be a number of dollars >= 0")
        values[key] = float(value)
    return Prices(**values)


def _model(entry: dict[str, Any], where: str) -> ModelInfo:
    try:
        long_prompt = entry.get("long_prompt")
        return ModelInfo(
            id=entry["id"],
            name=entry["name"],
            provider=entry["provider"],
            status=entry["status"],
            aliases=tuple(entry.get("aliases", ())),
            context_window=int(entry["context_window"]),
            max_output_tokens=int(entry["max_output_tokens"]),
            min_cacheable_tokens=int(entry["min_cacheable_tokens"]),
            prices=_prices(entry["prices"], f"{where}: {entry['id']}"),
            long_prompt=None
            if long_prompt is None
            else LongPromptPrices(
                int(long_prompt["above_tokens"]),
                _prices(long_prompt["prices"], f"{where}: {entry['id']}.long_prompt"),
            ),
            note=entry.get("note", ""),
        )
    except KeyError as exc:
        raise CatalogueError(f"{where}: a model lacks {exc.args[0]!r}") from None


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Read a catalogue file (default: the `models.json` shipped with botrunner)."""
    if path is None:
        source = resources.files("botrunner.providers").joinpath("models.json")
        where, text = "models.json", source.read_text(encoding="utf-8")
    else:
        where, text = str(path), Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogueError(f"{where}: not valid JSON: {exc}") from None
    return Catalogue([_model(entry, where) for entry in data["models"]])


@cache
def catalogue() -> Catalogue:
    """The catalogue shipped with botrunner (read once)."""
    return load_catalogue()


def find_model(name: str) -> ModelInfo | None:
    """The shipped catalogue's entry for a model id or alias, or None."""
    return catalogue().find(name)


def model_names() -> list[str]:
    """Every id and alias in the shipped catalogue, sorted."""
    return catalogue().names()


__all__ = [
    "Catalogue",
    "CatalogueError",
    "LongPromptPrices",
    "ModelInfo",
    "Prices",
    "TokenCounts",
    "catalogue",
    "cost_at",
    "find_model",
    "load_catalogue",
    "model_names",
]
