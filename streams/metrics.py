"""Prometheus metrics of DESIGN §8. Labels are bounded: topic, type, outcome, factory, action, kind."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# *_created series double the exposition for no use on dashboards or alerts
disable_created_metrics()

EVENTS = Counter("c2m_events", "Input events by topic, type and outcome (ok, invalid, duplicate)",
                 ["topic", "type", "outcome"])
EVENT_AGE = Histogram("c2m_event_age_seconds", "Processing time minus event ts",
                      buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600))
TRIGGER_LATENCY = Histogram("c2m_trigger_latency_seconds",
                            "Source event ts to trigger published on the factory topic", ["kind"],
                            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
TRIGGERS = Counter("c2m_triggers", "Triggers published", ["factory", "action", "kind"])
TRIGGER_UNITS = Counter("c2m_trigger_units", "Units asked of factories by published triggers",
                        ["factory"])
NICHES_ACTIVE = Gauge("c2m_niches_active", "Niches with state on this worker")
FACTORY_OPEN_UNITS = Gauge("c2m_factory_open_units", "Units triggered and not yet completed",
                           ["factory"])
FORECAST_MAE = Gauge("c2m_forecast_mae", "Progressive-validation mean absolute error of the demand forecast",
                     ["horizon"])
FORECAST_P90_COVERAGE = Gauge("c2m_forecast_p90_coverage", "Share of realised demand at or below the P90 forecast")
DRIFT_DETECTED = Counter("c2m_drift_detected", "Demand shifts detected (the planner re-plans the niche at once)")
GROUP_OUTCOMES = Counter("c2m_group_outcomes", "Group buys that filled or expired (published to c2m.group-outcomes)",
                         ["outcome"])
DEAD_LETTERS = Counter("c2m_dead_letters", "Records sent to the dead-letter topic", ["topic"])
STORE_MEMORY = Gauge("c2m_store_memory_bytes",
                     "Native memory of this worker's RocksDB stores (the shared cache and memtables counted once)",
                     ["kind"])  # kind: memtables, table_readers, block_cache

# event types a label may take; anything else is counted as "other" to bound cardinality
KNOWN_TYPES = frozenset({"view", "search", "add_to_cart", "remove_from_cart", "wishlist", "share",
                         "placed", "cancelled", "group_join", "unknown"})


def type_label(etype: object) -> str:
    return etype if isinstance(etype, str) and etype in KNOWN_TYPES else "other"
