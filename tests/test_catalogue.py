"""The model catalogue: the shipped data is consistent, lookups and costs are right, and a
user's price file overrides prices with clear errors."""

from __future__ import annotations

import json
import math

import pytest

from botrunner.providers.catalogue import (
    CatalogueError,
    TokenCounts,
    catalogue,
    find_model,
    load_catalogue,
    model_names,
)


def test_every_shipped_model_is_complete_and_priced_by_the_documented_multipliers():
    models = catalogue().models
    assert len({m.id for m in models}) == len(models)
    for model in models:
        assert model.provider == "anthropic"
        assert model.status in {"current", "legacy"}
        assert model.max_output_tokens < model.context_window
        assert model.min_cacheable_tokens in {512, 1024, 2048, 4096}
        tiers = [model.prices] + ([model.long_prompt.prices] if model.long_prompt else [])
        for prices in tiers:
            # Anthropic's pricing page: 5-minute writes 1.25x input, 1-hour writes 2x input,
            # cache reads at most 0.1x input (some models are cheaper).
            assert math.isclose(prices.cache_write_5m, prices.input * 1.25), model.id
            assert math.isclose(prices.cache_write_1h, prices.input * 2), model.id
            assert 0 < prices.cache_read <= prices.input * 0.1 + 1e-9, model.id
            assert prices.output > prices.input


def test_current_models_are_listed_by_id_and_alias():
    for name in ("claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5", "claude-fable-5-2"):
        assert find_model(name).status == "current"
    haiku = find_model("claude-haiku-4-5")
    assert haiku is not None and haiku.id == "claude-haiku-4-5-20251001"
    assert haiku.min_cacheable_tokens == 4096
    assert "claude-haiku-4-5" in model_names() and "claude-haiku-4-5-20251001" in model_names()
    assert find_model("claude-sonet-5-5") is None
    assert catalogue().suggest("claude-sonet-5-5")[0] == "claude-sonnet-5-5"


def test_cost_splits_writes_by_ttl_and_uses_long_prompt_prices():
    opus = find_model("claude-opus-5-5")
    tokens = TokenCounts(
        input=1_000, cache_write=3_000, cache_write_1h=1_000, cache_read=10_000, output=500
    )
    # 1000*4 + 2000*5 + 1000*8 + 10000*0.2 + 500*20 = 34000 dollars per million tokens
    assert opus.cost(tokens) == pytest.approx(0.034)
    haiku = find_model("claude-haiku-5-5")
    short = TokenCounts(input=100_000, output=1_000)
    long = TokenCounts(input=60_000, cache_read=40_001, output=1_000)
    assert haiku.cost(short) == pytest.approx((100_000 * 0.10 + 1_000 * 0.50) / 1e6)
    assert haiku.cost(long) == pytest.approx((60_000 * 0.50 + 40_001 * 0.05 + 1_000 * 2.5) / 1e6)


def test_a_price_file_overrides_some_fields_and_prices_unknown_models(tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        "claude-opus-5-5: {input: 3}\n"
        "my-model: {input: 1, cache_write_5m: 1.25, cache_write_1h: 2, cache_read: 0.1, output: 5}\n",
        encoding="utf-8",
    )
    custom = catalogue().with_prices(prices)
    opus = custom.find("claude-opus-5-5")
    assert opus.prices.input == 3 and opus.prices.output == 20
    assert opus.min_cacheable_tokens == 512
    assert custom.find("my-model").cost(TokenCounts(input=1_000_000)) == pytest.approx(1.0)
    assert find_model("claude-opus-5-5").prices.input == 4  # the shipped catalogue is untouched


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("other-model: {input: 1}\n", "other-model: missing price field 'cache_write_5m'"),
        ("claude-opus-5-5: {inptu: 1}\n", "unknown price field 'inptu'"),
        ("claude-opus-5-5: {input: -1}\n", "input must be a number of dollars >= 0"),
        ("- a list\n", "expected a mapping of model name to prices"),
    ],
)
def test_a_bad_price_file_names_the_file_model_and_field(tmp_path, text, message):
    prices = tmp_path / "prices.yaml"
    prices.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogueError) as caught:
        catalogue().with_prices(prices)
    assert str(prices) in str(caught.value) and message in str(caught.value)


def test_a_catalogue_file_missing_a_field_names_it(tmp_path):
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"models": [{"id": "x", "name": "X"}]}), encoding="utf-8")
    with pytest.raises(CatalogueError, match="a model lacks 'provider'"):
        load_catalogue(path)
