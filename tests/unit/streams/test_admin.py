"""diff() and render() of `c2m topics apply`: the reconciliation rules, without a broker."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from streams.admin import Change, ExistingTopic, diff, render
from streams.topology import TopicSpec

CLICKS = TopicSpec("c2m.clickstream", 6, 1, {"retention.ms": "604800000"})
CATALOG = TopicSpec("c2m.catalog", 6, 1, {"cleanup.policy": "compact"})
STATUS = TopicSpec("c2m.factory-status", 3, 1)


def as_existing(spec: TopicSpec, **extra_config: str) -> ExistingTopic:
    return ExistingTopic(spec.partitions, {**spec.config, **extra_config})


def test_missing_topics_are_created_with_partitions_rf_and_config() -> None:
    assert diff([CATALOG, STATUS], {}) == [
        Change("create", "c2m.catalog", "6 partitions, rf 1, cleanup.policy=compact"),
        Change("create", "c2m.factory-status", "3 partitions, rf 1"),
    ]


def test_fewer_partitions_than_desired_grows() -> None:
    existing = {CLICKS.name: ExistingTopic(3, dict(CLICKS.config))}
    assert diff([CLICKS], existing) == [Change("grow", CLICKS.name, "partitions 3 -> 6")]


def test_more_partitions_than_desired_is_never_a_shrink() -> None:
    existing = {CLICKS.name: ExistingTopic(12, dict(CLICKS.config))}
    assert diff([CLICKS], existing) == []


def test_config_drift_is_reported_per_key() -> None:
    spec = TopicSpec("c2m.orders", 6, 1, {"retention.ms": "2592000000", "cleanup.policy": "delete"})
    existing = {spec.name: ExistingTopic(6, {"retention.ms": "604800000", "cleanup.policy": "delete"})}
    assert diff([spec], existing) == [
        Change("config", "c2m.orders", "retention.ms 604800000 -> 2592000000"),
    ]


def test_config_key_absent_on_the_broker_is_shown_as_unset() -> None:
    spec = TopicSpec("t", 1, 1, {"x.y": "1"})
    assert diff([spec], {"t": ExistingTopic(1, {})}) == [Change("config", "t", "x.y (unset) -> 1")]


def test_grow_and_config_on_the_same_topic() -> None:
    existing = {CLICKS.name: ExistingTopic(2, {"retention.ms": "1"})}
    assert [c.action for c in diff([CLICKS], existing)] == ["grow", "config"]


def test_config_keys_not_in_topics_yaml_are_left_alone() -> None:
    existing = {CATALOG.name: as_existing(CATALOG, **{"segment.ms": "1000", "min.insync.replicas": "2"})}
    assert diff([CATALOG], existing) == []


def test_replication_factor_of_existing_topics_is_not_changed() -> None:
    assert diff([replace(STATUS, replication_factor=3)], {STATUS.name: as_existing(STATUS)}) == []


def test_state_equal_to_desired_is_up_to_date() -> None:
    desired = [CLICKS, CATALOG, STATUS]
    assert diff(desired, {s.name: as_existing(s) for s in desired}) == []


def test_topics_not_in_topics_yaml_are_ignored() -> None:
    existing = {
        STATUS.name: as_existing(STATUS),
        "legacy.topic": ExistingTopic(1, {"retention.ms": "1"}),
        "__consumer_offsets": ExistingTopic(50, {"cleanup.policy": "compact"}),
    }
    assert diff([STATUS], existing) == []


def test_changes_follow_topics_yaml_order() -> None:
    desired = [STATUS, CLICKS, CATALOG]
    assert [c.topic for c in diff(desired, {})] == [s.name for s in desired]


# --- property: applying diff's changes, then diffing again, finds nothing left to do -------------

NAMES = st.sampled_from([f"t{i}" for i in range(8)])
CONFIG_KEYS = st.sampled_from(["retention.ms", "cleanup.policy", "segment.ms", "max.message.bytes"])
VALUES = st.sampled_from(["1", "2", "compact", "delete", "604800000"])
CONFIGS = st.dictionaries(CONFIG_KEYS, VALUES, max_size=3)


@st.composite
def desired_and_existing(draw: st.DrawFn) -> tuple[list[TopicSpec], dict[str, ExistingTopic]]:
    names = draw(st.lists(NAMES, unique=True, max_size=6))
    desired = [TopicSpec(n, draw(st.integers(1, 12)), draw(st.integers(1, 3)), draw(CONFIGS))
               for n in names]
    existing = draw(st.dictionaries(NAMES, st.builds(ExistingTopic, st.integers(1, 12), CONFIGS),
                                    max_size=8))
    return desired, existing


def simulate(changes: list[Change], desired: list[TopicSpec],
             existing: dict[str, ExistingTopic]) -> dict[str, ExistingTopic]:
    """What the cluster looks like after the changes, reading only the Change records."""
    specs = {s.name: s for s in desired}
    state = {name: ExistingTopic(t.partitions, dict(t.config)) for name, t in existing.items()}
    for change in changes:
        spec = specs[change.topic]
        if change.action == "create":
            state[change.topic] = ExistingTopic(spec.partitions, dict(spec.config))
        elif change.action == "grow":
            state[change.topic] = replace(state[change.topic], partitions=spec.partitions)
        else:
            assert change.action == "config"
            key = change.detail.split(" ", 1)[0]
            state[change.topic].config[key] = spec.config[key]
    return state


@given(desired_and_existing())
def test_diff_then_apply_converges(case: tuple[list[TopicSpec], dict[str, ExistingTopic]]) -> None:
    desired, existing = case
    changes = diff(desired, existing)
    assert diff(desired, simulate(changes, desired, existing)) == []


@given(desired_and_existing())
def test_diff_is_additive_only(case: tuple[list[TopicSpec], dict[str, ExistingTopic]]) -> None:
    desired, existing = case
    names = {s.name for s in desired}
    for change in diff(desired, existing):
        assert change.topic in names
        assert change.action in {"create", "grow", "config"}
        if change.action == "create":
            assert change.topic not in existing
        if change.action == "grow":
            before, after = change.detail.removeprefix("partitions ").split(" -> ")
            assert int(before) < int(after)


# --- render ----------------------------------------------------------------------------------------

CHANGES = [
    Change("create", "c2m.clickstream", "6 partitions, rf 1"),
    Change("grow", "c2m.orders", "partitions 3 -> 6"),
    Change("config", "c2m.orders", "retention.ms 604800000 -> 2592000000"),
]


def test_render_one_line_per_change() -> None:
    text = render(CHANGES, dry_run=False)
    lines = text.splitlines()
    assert lines[0] == "applied 3 changes:"
    assert [line.strip() for line in lines[1:]] == [
        "create c2m.clickstream (6 partitions, rf 1)",
        "grow c2m.orders (partitions 3 -> 6)",
        "config c2m.orders (retention.ms 604800000 -> 2592000000)",
    ]


def test_render_dry_run_says_nothing_was_changed() -> None:
    lines = render(CHANGES[:1], dry_run=True).splitlines()
    assert "nothing was changed" in lines[0]
    assert "would be applied" in lines[0]
    assert lines[1].strip() == "create c2m.clickstream (6 partitions, rf 1)"


def test_render_up_to_date() -> None:
    assert render([], dry_run=False, total=9) == "topics are up to date (9 topics)"
    assert render([], dry_run=False) == "topics are up to date"
    assert "nothing was changed" in render([], dry_run=True, total=9)
    assert render([], dry_run=True, total=9).endswith("topics are up to date (9 topics)")
