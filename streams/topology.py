"""topics.yaml: topics, factories and the niche definition, validated into small frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from models.routing import Factory
from streams.errors import UserError

TRIGGER_TOPIC_PREFIX = "c2m.triggers."
NICHE_ATTRIBUTES = ("category", "style", "color", "size_band", "region")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Topology:
    topics: tuple[TopicSpec, ...]
    factories: tuple[Factory, ...]
    niche_attributes: tuple[str, ...]
    size_bands: dict[str, str]

    def topic(self, name: str) -> TopicSpec:
        for spec in self.topics:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def factory(self, factory_id: str) -> Factory:
        for f in self.factories:
            if f.id == factory_id:
                return f
        raise UserError(f"unknown factory {factory_id!r}; topics.yaml declares: "
                        + ", ".join(f.id for f in self.factories))


def trigger_topic(factory_id: str) -> str:
    return f"{TRIGGER_TOPIC_PREFIX}{factory_id}"


def load(path: Path) -> Topology:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"topics file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    try:
        return parse(raw)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def parse(raw: Any) -> Topology:
    """Validate the parsed YAML; every mistake is reported as one readable line."""
    if not isinstance(raw, dict):
        raise UserError("top level must be a mapping")
    defaults = _mapping(raw.get("defaults", {}), "defaults")
    default_parts = _positive_int(defaults.get("partitions", 6), "defaults.partitions")
    default_rf = _positive_int(defaults.get("replication_factor", 1), "defaults.replication_factor")

    topics: list[TopicSpec] = []
    for name, body in _mapping(raw.get("topics"), "topics").items():
        body = _mapping(body or {}, f"topics.{name}")
        topics.append(_topic(str(name), body, default_parts, default_rf))

    factories = tuple(_factory(i, f) for i, f in enumerate(_list(raw.get("factories"), "factories")))
    if not factories:
        raise UserError("factories: declare at least one factory")
    ids = [f.id for f in factories]
    if len(set(ids)) != len(ids):
        raise UserError(f"factories: duplicate id in {ids}")

    trig = _mapping(raw.get("trigger_topics", {}) or {}, "trigger_topics")
    for f in factories:
        topics.append(_topic(trigger_topic(f.id), trig, default_parts, default_rf))

    niche = _mapping(raw.get("niche", {}) or {}, "niche")
    attributes = tuple(str(a) for a in _list(niche.get("attributes", list(NICHE_ATTRIBUTES)),
                                            "niche.attributes"))
    if not attributes:
        raise UserError("niche.attributes: name at least one attribute")
    size_bands = {str(k): str(v) for k, v in _mapping(niche.get("size_bands", {}) or {},
                                                     "niche.size_bands").items()}
    return Topology(tuple(topics), factories, attributes, size_bands)


def _topic(name: str, body: dict[str, Any], parts: int, rf: int) -> TopicSpec:
    config = {str(k): str(v) for k, v in _mapping(body.get("config", {}) or {},
                                                 f"topics.{name}.config").items()}
    return TopicSpec(
        name=name,
        partitions=_positive_int(body.get("partitions", parts), f"{name}.partitions"),
        replication_factor=_positive_int(body.get("replication_factor", rf),
                                         f"{name}.replication_factor"),
        config=config,
    )


def _factory(index: int, raw: Any) -> Factory:
    where = f"factories[{index}]"
    body = _mapping(raw, where)
    fid = body.get("id")
    if not isinstance(fid, str) or not fid or not all(c.isalnum() or c in "-_." for c in fid):
        raise UserError(f"{where}.id must be a topic-safe name (letters, digits, - _ .), got {fid!r}")
    categories = tuple(str(c) for c in _list(body.get("categories"), f"{where}.categories"))
    if not categories:
        raise UserError(f"{where}.categories: name at least one category")
    min_batch = _positive_int(body.get("min_batch"), f"{where}.min_batch")
    step = _positive_int(body.get("batch_step", min_batch), f"{where}.batch_step")
    return Factory(
        id=fid,
        categories=categories,
        capacity_units_per_day=_positive_int(body.get("capacity_units_per_day"),
                                             f"{where}.capacity_units_per_day"),
        min_batch=min_batch,
        batch_step=step,
        lead_time_hours=_positive_int(body.get("lead_time_hours"), f"{where}.lead_time_hours"),
    )


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UserError(f"{where} must be a mapping")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise UserError(f"{where} must be a list")
    return value


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"{where} must be a positive integer, got {value!r}")
    return value
