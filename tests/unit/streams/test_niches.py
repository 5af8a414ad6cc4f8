"""Niche keys: stable, human-readable, size-banded, and impossible to forge with the separator."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.niches import SEPARATOR, MissingAttribute, niche_of
from streams.topology import NICHE_ATTRIBUTES

ATTRS = {"category": "dress", "style": "boho", "color": "sage", "size": "M"}
BANDS = {"XXS": "XS", "XXL": "XL+", "XXXL": "XL+", "3XL": "XL+"}


def test_default_key_is_human_readable() -> None:
    key, niche = niche_of(ATTRS, "CN-GD", NICHE_ATTRIBUTES, {})
    assert key == "dress|boho|sage|M|CN-GD"
    assert niche == {"category": "dress", "style": "boho", "color": "sage", "size": "M", "region": "CN-GD"}


def test_key_is_stable_whatever_the_attribute_order_or_extras() -> None:
    shuffled = {"size": "M", "color": "sage", "sku_note": "ignored", "style": "boho", "category": "dress"}
    assert niche_of(shuffled, "CN-GD", NICHE_ATTRIBUTES, {}) == niche_of(ATTRS, "CN-GD", NICHE_ATTRIBUTES, {})


def test_size_band_is_applied() -> None:
    key, niche = niche_of({**ATTRS, "size": "XXL"}, "CN-GD", NICHE_ATTRIBUTES, BANDS)
    assert key == "dress|boho|sage|XL+|CN-GD"
    assert niche["size"] == "XL+"
    assert "size_band" not in niche
    assert niche_of({**ATTRS, "size": "3XL"}, "CN-GD", NICHE_ATTRIBUTES, BANDS)[0] == key


def test_unlisted_size_is_its_own_band() -> None:
    key, _ = niche_of(ATTRS, "CN-GD", NICHE_ATTRIBUTES, BANDS)
    assert key == "dress|boho|sage|M|CN-GD"


def test_region_comes_from_the_event_not_the_attrs() -> None:
    key, niche = niche_of({**ATTRS, "region": "CN-SH"}, "CN-GD", NICHE_ATTRIBUTES, {})
    assert niche["region"] == "CN-GD"
    assert key.endswith("|CN-GD")


def test_separator_in_a_value_cannot_forge_a_key() -> None:
    a, niche_a = niche_of({**ATTRS, "style": "boho|sage", "color": "x"}, "CN-GD", NICHE_ATTRIBUTES, {})
    b, _ = niche_of({**ATTRS, "style": "boho", "color": "sage|x"}, "CN-GD", NICHE_ATTRIBUTES, {})
    assert a != b
    assert a.count(SEPARATOR) == len(NICHE_ATTRIBUTES) - 1
    assert SEPARATOR not in niche_a["style"]


@pytest.mark.parametrize("missing", ["category", "style", "color", "size"])
def test_missing_attribute_is_named(missing: str) -> None:
    attrs = {k: v for k, v in ATTRS.items() if k != missing}
    with pytest.raises(MissingAttribute) as info:
        niche_of(attrs, "CN-GD", NICHE_ATTRIBUTES, BANDS)
    assert info.value.args[0] == missing


def test_empty_attribute_counts_as_missing() -> None:
    with pytest.raises(MissingAttribute, match="color"):
        niche_of({**ATTRS, "color": ""}, "CN-GD", NICHE_ATTRIBUTES, {})


def test_custom_attribute_list() -> None:
    key, niche = niche_of(ATTRS, "CN-GD", ("category", "region"), {})
    assert key == "dress|CN-GD"
    assert niche == {"category": "dress", "region": "CN-GD"}


values = st.text(min_size=1, max_size=8)


@given(values, values, values, values, values)
def test_key_splits_back_into_the_niche_values(cat: str, style: str, color: str, size: str, region: str) -> None:
    attrs = {"category": cat, "style": style, "color": color, "size": size}
    key, niche = niche_of(attrs, region, NICHE_ATTRIBUTES, {})
    assert key.split(SEPARATOR) == list(niche.values())
    assert list(niche) == ["category", "style", "color", "size", "region"]
