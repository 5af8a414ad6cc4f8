"""topics.yaml: the repo's file loads into a sound Topology; mistakes are one readable UserError."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.errors import UserError
from streams.topology import NICHE_ATTRIBUTES, Topology, load, parse, trigger_topic

REPO_TOPICS = Path(__file__).resolve().parents[3] / "topics.yaml"

MINIMAL: dict[str, Any] = {
    "defaults": {"partitions": 6, "replication_factor": 1},
    "topics": {"c2m.clickstream": None, "c2m.catalog": {"config": {"cleanup.policy": "compact"}}},
    "trigger_topics": {"partitions": 3},
    "factories": [
        {"id": "f-1", "categories": ["dress"], "capacity_units_per_day": 1000, "min_batch": 100,
         "batch_step": 50, "lead_time_hours": 48},
        {"id": "f-2", "categories": ["top"], "capacity_units_per_day": 500, "min_batch": 50,
         "lead_time_hours": 24},
    ],
}


def with_change(path: list[Any], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(MINIMAL)
    target: Any = raw
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return raw


@pytest.fixture(scope="module")
def repo() -> Topology:
    return load(REPO_TOPICS)


def test_repo_topics_yaml_has_enough_factories_and_categories(repo: Topology) -> None:
    assert len(repo.factories) >= 4
    categories = {c for f in repo.factories for c in f.categories}
    assert len(categories) >= 3


def test_repo_has_one_trigger_topic_per_factory(repo: Topology) -> None:
    trigger_topics = sorted(t.name for t in repo.topics if t.name.startswith("c2m.triggers."))
    assert trigger_topics == sorted(f"c2m.triggers.{f.id}" for f in repo.factories)


def test_repo_has_the_design_topics_and_a_compacted_catalog(repo: Topology) -> None:
    names = {t.name for t in repo.topics}
    assert {"c2m.clickstream", "c2m.orders", "c2m.catalog", "c2m.factory-status", "c2m.dead-letter"} <= names
    assert repo.topic("c2m.catalog").config.get("cleanup.policy") == "compact"
    assert repo.topic("c2m.clickstream").config.get("cleanup.policy") != "compact"


def test_repo_niche_definition(repo: Topology) -> None:
    assert repo.niche_attributes == NICHE_ATTRIBUTES
    assert repo.size_bands.get("XXL") == "XL+"


def test_repo_factories_have_sane_batches(repo: Topology) -> None:
    for f in repo.factories:
        assert f.min_batch > 0
        assert f.batch_step > 0
        assert f.min_batch <= f.capacity_units_per_day


def test_parse_applies_defaults() -> None:
    topo = parse(MINIMAL)
    assert topo.topic("c2m.clickstream").partitions == 6
    assert topo.topic("c2m.clickstream").replication_factor == 1
    assert topo.topic(trigger_topic("f-1")).partitions == 3
    assert topo.factory("f-2").batch_step == 50  # defaults to min_batch
    assert topo.niche_attributes == NICHE_ATTRIBUTES
    assert topo.size_bands == {}


def test_config_values_become_strings() -> None:
    topo = parse(with_change(["topics", "c2m.clickstream"], {"config": {"retention.ms": 604800000}}))
    assert topo.topic("c2m.clickstream").config == {"retention.ms": "604800000"}


def test_unknown_factory_is_a_user_error_listing_the_known_ones() -> None:
    with pytest.raises(UserError, match="f-1, f-2"):
        parse(MINIMAL).factory("f-9")


def test_unknown_topic_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        parse(MINIMAL).topic("c2m.nope")


@pytest.mark.parametrize(("raw", "words"), [
    (["a", "list"], "top level must be a mapping"),
    ("just text", "top level must be a mapping"),
    (None, "top level must be a mapping"),
    (with_change(["defaults", "partitions"], -1), "defaults.partitions must be a positive integer"),
    (with_change(["topics", "c2m.catalog"], {"partitions": -3}), "c2m.catalog.partitions"),
    (with_change(["topics", "c2m.catalog"], {"partitions": 0}), "c2m.catalog.partitions"),
    (with_change(["topics", "c2m.catalog"], {"partitions": "6"}), "c2m.catalog.partitions"),
    (with_change(["topics", "c2m.catalog"], {"partitions": True}), "c2m.catalog.partitions"),
    (with_change(["topics"], ["c2m.clickstream"]), "topics must be a mapping"),
    (with_change(["factories"], []), "at least one factory"),
    (with_change(["factories"], {"f-1": {}}), "factories must be a list"),
    (with_change(["factories", 1, "id"], "f-1"), "duplicate id"),
    (with_change(["factories", 0, "id"], "f 1"), "factories[0].id"),
    (with_change(["factories", 0, "id"], ""), "factories[0].id"),
    (with_change(["factories", 0, "id"], 7), "factories[0].id"),
    (with_change(["factories", 1, "categories"], []), "factories[1].categories"),
    (with_change(["factories", 1, "min_batch"], None), "factories[1].min_batch"),
    (with_change(["factories", 0, "lead_time_hours"], 2.5), "factories[0].lead_time_hours"),
    (with_change(["niche"], {"attributes": []}), "niche.attributes"),
    (with_change(["niche"], {"size_bands": ["XXL"]}), "niche.size_bands"),
])
def test_mistakes_raise_a_readable_user_error(raw: Any, words: str) -> None:
    with pytest.raises(UserError) as info:
        parse(raw)
    message = str(info.value)
    assert words in message
    assert "\n" not in message


def test_factory_id_with_a_space_is_rejected_with_its_value() -> None:
    with pytest.raises(UserError, match="'f 1'"):
        parse(with_change(["factories", 0, "id"], "f 1"))


def test_load_of_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    assert [f.id for f in load(path).factories] == ["f-1", "f-2"]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(UserError, match="not found") as info:
        load(path)
    assert str(path) in str(info.value)


def test_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "topics.yaml"
    path.write_text("topics: [unclosed\n  factories: {\n")
    with pytest.raises(UserError, match="not valid YAML") as info:
        load(path)
    assert str(path) in str(info.value)


def test_load_names_the_file_in_validation_errors(tmp_path: Path) -> None:
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(with_change(["factories", 1, "id"], "f-1")))
    with pytest.raises(UserError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "duplicate id" in str(info.value)


def test_empty_file_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "topics.yaml"
    path.write_text("")
    with pytest.raises(UserError, match="top level must be a mapping"):
        load(path)
