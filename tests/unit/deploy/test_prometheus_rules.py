"""deploy/prometheus: promtool accepts the configs and rules, the rules' unit tests pass, and every
rule names only metrics a worker really exports."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.unit.deploy.support import (
    K8S_DIR,
    PROMETHEUS_DIR,
    alert_rules,
    c2m_metric_names,
    exported_metric_names,
    faust_metric_names,
    promql_metric_names,
    run_promtool,
)

REQUIRED_ALERTS = {
    "C2MConsumerLagGrowing",       # consumer lag growing
    "C2MNoTriggersWhileOrdersFlow",  # no triggers while orders flow
    "C2MForecastMAEDegraded",      # forecast MAE degraded
    "C2MDriftStorm",               # drift storm
    "C2MDeadLetterRateHigh",       # dead-letter rate high
    "C2MWorkerDown",               # worker down
}


def test_promtool_accepts_the_alert_rules() -> None:
    out = run_promtool("check", "rules", PROMETHEUS_DIR / "alerts.yml").stdout
    assert "SUCCESS" in out


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.compose.yml"])
def test_promtool_accepts_the_scrape_configs(config: str) -> None:
    out = run_promtool("check", "config", PROMETHEUS_DIR / config).stdout
    assert "1 rule files found" in out, out


def test_promtool_accepts_the_kubernetes_scrape_config(tmp_path: Path) -> None:
    """The ConfigMap's prometheus.yml, with alerts.yml where it expects it (rules/alerts.yml).

    Debian builds Prometheus without Kubernetes service discovery (its promtool rejects
    kubernetes_sd_configs as an unknown field), so that block is checked here and swapped for a
    static target before promtool checks the rest (relabelling, rule files).
    """
    (cm,) = yaml.safe_load_all((K8S_DIR / "prometheus-config.yaml").read_text())
    config = yaml.safe_load(cm["data"]["prometheus.yml"])
    (job,) = config["scrape_configs"]
    (sd,) = job.pop("kubernetes_sd_configs")
    assert sd == {"role": "endpoints", "namespaces": {"names": ["c2m"]}}
    job["static_configs"] = [{"targets": ["c2m-worker:6066"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "rules").mkdir()
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", tmp_path / "rules" / "alerts.yml")
    out = run_promtool("check", "config", tmp_path / "prometheus.yml").stdout
    assert "1 rule files found" in out, out


def test_alert_rules_unit_tests_pass() -> None:
    """deploy/prometheus/alerts_test.yml: synthetic series that must (and must not) fire alerts."""
    tested = {line.split(":", 1)[1].strip() for line in
              (PROMETHEUS_DIR / "alerts_test.yml").read_text().splitlines()
              if line.strip().startswith("alertname:")}
    assert len(tested & REQUIRED_ALERTS) >= 2, tested
    out = run_promtool("test", "rules", "alerts_test.yml", cwd=PROMETHEUS_DIR).stdout
    assert "SUCCESS" in out, out


def test_every_required_alert_exists_with_severity_and_summary() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules() if "alert" in rule}
    assert rules.keys() >= REQUIRED_ALERTS, REQUIRED_ALERTS - rules.keys()
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_rules_name_only_metrics_a_worker_exports() -> None:
    exported = exported_metric_names()
    for rule in alert_rules():
        used = promql_metric_names(rule["expr"])
        assert used, f"{rule.get('alert')}: no metric found in {rule['expr']!r}"
        assert used <= exported, f"{rule.get('alert')} uses {sorted(used - exported)}, not exported by a worker"


def test_scrape_configs_target_the_worker_metrics_port() -> None:
    """Local: 127.0.0.1:6066; compose: every `worker` replica on 6066; one job name everywhere."""
    local = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (job,) = local["scrape_configs"]
    assert (job["job_name"], job["metrics_path"]) == ("c2m-worker", "/metrics")
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:6066"]
    compose = yaml.safe_load((PROMETHEUS_DIR / "prometheus.compose.yml").read_text())
    (job,) = compose["scrape_configs"]
    assert job["job_name"] == "c2m-worker"
    assert job["dns_sd_configs"][0]["names"] == ["worker"] and job["dns_sd_configs"][0]["port"] == 6066
    for rule in alert_rules():
        if "job=" in rule["expr"]:
            assert 'job="c2m-worker"' in rule["expr"], rule["alert"]


def test_extractor_finds_metric_names_and_nothing_else() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, kind) (rate(c2m_trigger_latency_seconds_bucket{job=~"$job", '
            'kind="forecast"}[$__rate_interval]))) > 1e3 and on (job) up{job="x"} == bool 1 '
            'unless avg_over_time(c2m_forecast_mae[1d] offset 30m) or deriv((sum(a:b))[10m:1m])')
    assert promql_metric_names(expr) == {"c2m_trigger_latency_seconds_bucket", "up", "c2m_forecast_mae", "a:b"}


def test_faust_sensor_names_with_the_default_app_id_do_not_collide_with_ours() -> None:
    """With C2M_APP_ID=c2m both sets share the c2m_ prefix on one registry; a clash would stop the worker."""
    ours, faust = c2m_metric_names(), faust_metric_names("c2m")
    assert {"c2m_events_total", "c2m_trigger_latency_seconds_bucket", "c2m_forecast_mae"} <= ours
    assert {"c2m_topic_partition_end_offset", "c2m_topic_partition_offset_commited",
            "c2m_messages_received_total"} <= faust
    assert not ours & faust
