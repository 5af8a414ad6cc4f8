"""deploy/grafana: the dashboard parses, covers DESIGN §8, its PromQL is valid (promtool) and names
only metrics a worker really exports; the provisioning files point at it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.unit.deploy.support import (
    DASHBOARD,
    GRAFANA_DIR,
    dashboard,
    dashboard_queries,
    exported_metric_names,
    panels,
    promql_metric_names,
    run_promtool,
    substitute_grafana_variables,
)

# What the dashboard must show (issue 6 / DESIGN §8), as the metric each view needs.
REQUIRED_VIEWS = {
    "events/s by type": ("c2m_events_total", "by (type)"),
    "event age": ("c2m_event_age_seconds_bucket", "histogram_quantile"),
    "trigger latency p99": ("c2m_trigger_latency_seconds_bucket", "histogram_quantile(0.99"),
    "triggers per factory": ("c2m_triggers_total", "factory"),
    "units per factory": ("c2m_trigger_units_total", "factory"),
    "forecast MAE": ("c2m_forecast_mae", ""),
    "forecast coverage": ("c2m_forecast_p90_coverage", ""),
    "drift": ("c2m_drift_detected_total", ""),
    "dead letters": ("c2m_dead_letters_total", ""),
    "consumer lag": ("c2m_topic_partition_offset_commited", "c2m_topic_partition_end_offset"),
}


def test_dashboard_is_valid_json_with_unique_panel_ids() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(board):
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys(), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]


def test_dashboard_shows_every_required_view() -> None:
    queries = [expr for _, expr in dashboard_queries(dashboard())]
    for view, (metric, detail) in REQUIRED_VIEWS.items():
        assert any(metric in q and detail in q for q in queries), f"no panel shows {view} ({metric})"


def test_dashboard_queries_name_only_metrics_a_worker_exports() -> None:
    exported = exported_metric_names()
    queries = dashboard_queries(dashboard())
    assert len(queries) >= 10
    for title, expr in queries:
        used = promql_metric_names(expr)
        assert used, f"panel {title!r}: no metric found in {expr!r}"
        assert used <= exported, f"panel {title!r} uses {sorted(used - exported)}, not exported by a worker"


def test_dashboard_variables_query_exported_metrics() -> None:
    exported = exported_metric_names()
    for var in dashboard()["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
        assert match, f"variable {var['name']}: unexpected query {query!r}"
        assert match.group(1) in exported, query


def test_dashboard_targets_use_the_datasource_variable() -> None:
    names = {var["name"] for var in dashboard()["templating"]["list"]}
    assert "datasource" in names
    for panel in panels(dashboard()):
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every query, each turned into a recording rule (Grafana variables filled in)."""
    rules = [{"record": f"dashboard:panel_{i}", "expr": substitute_grafana_variables(expr)}
             for i, (_, expr) in enumerate(dashboard_queries(dashboard()))]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run_promtool("check", "rules", path).stdout
    assert f"{len(rules)} rules found" in out, out


def test_provisioning_points_at_prometheus_and_the_dashboard() -> None:
    datasources = yaml.safe_load((GRAFANA_DIR / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "${PROMETHEUS_URL}" and source["isDefault"]
    providers = yaml.safe_load((GRAFANA_DIR / "provisioning/dashboards/c2m.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    # docker-compose mounts deploy/grafana/dashboards at the provider's path
    compose = yaml.safe_load((GRAFANA_DIR.parent / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert DASHBOARD.parent.name == "dashboards" and DASHBOARD.exists()
