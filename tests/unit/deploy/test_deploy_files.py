"""deploy/Dockerfile, deploy/docker-compose.yml, deploy/k8s and .ci/run, checked without Docker or
a cluster: they parse, run real `c2m` command lines, use port 6066 and /healthz, and set only
C2M_* variables that streams/config.py reads."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import yaml

from streams.config import REPO_ROOT
from tests.unit.deploy.support import DEPLOY, K8S_DIR, parse_c2m

API_PORT = 6066


def config_env_names() -> set[str]:
    """The C2M_* variables streams/config.py reads."""
    return set(re.findall(r'"(C2M_[A-Z0-9_]+)"', (REPO_ROOT / "streams" / "config.py").read_text()))


def check_env(env: dict[str, Any], where: str) -> None:
    """Only known C2M_* names; the API listens on every interface, on the metrics port."""
    c2m = {k: str(v) for k, v in env.items() if k.startswith("C2M_")}
    unknown = c2m.keys() - config_env_names()
    assert not unknown, f"{where}: streams/config.py reads no {sorted(unknown)}"
    assert c2m.get("C2M_API_HOST") == "0.0.0.0", f"{where}: C2M_API_HOST must be 0.0.0.0 in a container"
    assert c2m.get("C2M_API_PORT", str(API_PORT)) == str(API_PORT), where
    assert c2m.get("C2M_KAFKA_BOOTSTRAP"), f"{where}: no C2M_KAFKA_BOOTSTRAP"


def test_console_script_is_c2m() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["c2m"] == "streams.cli:main"


def test_the_worker_serves_healthz_and_metrics() -> None:
    app = (REPO_ROOT / "streams" / "app.py").read_text()
    assert '@app.page("/healthz")' in app
    assert 'setup_prometheus_sensors(app, pattern="/metrics"' in app


# --- Dockerfile ---------------------------------------------------------------------------------

def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, rest in dockerfile():
        if instruction == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(rest))
    return env


def test_dockerfile_builds_the_worker_image() -> None:
    steps = dockerfile()
    by = {instruction: rest for instruction, rest in steps}  # the last of each
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert json.loads(by["ENTRYPOINT"]) == ["c2m"]
    cmd = json.loads(by["CMD"])
    assert cmd[0] == "worker" and parse_c2m(cmd) == ["worker"]
    assert by["EXPOSE"] == str(API_PORT)
    check = json.loads(by["HEALTHCHECK"].split(" CMD ", 1)[1])  # exec form: no shell, no curl in -slim
    assert check[0] == "python" and "/healthz" in check[-1] and "C2M_API_PORT" in check[-1]
    assert any(i == "RUN" and "pip install" in r and " ." in r for i, r in steps), "the project is not installed"
    copied = " ".join(r for i, r in steps if i == "COPY")
    for needed in ("pyproject.toml", "streams", "models", "topics.yaml"):
        assert needed in copied, f"the image lacks {needed}"
    assert by["USER"] not in ("root", "0")


def test_dockerfile_environment() -> None:
    env = dockerfile_env()
    check_env(env, "Dockerfile")
    assert env["C2M_TOPICS_FILE"] == "/app/topics.yaml"  # a non-editable install has no repo root


# --- docker-compose -----------------------------------------------------------------------------

def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_compose_kafka_is_a_single_kraft_node() -> None:
    kafka = compose()["services"]["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.1\.\d+", kafka["image"]), kafka["image"]
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "ZOOKEEPER" not in " ".join(env)
    assert "kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    assert "healthcheck" in kafka


def test_compose_applies_topics_once_then_runs_workers() -> None:
    services = compose()["services"]
    topics, worker = services["topics"], services["worker"]
    assert parse_c2m(topics["command"]) == ["topics", "apply"]
    assert topics["restart"] == "no"
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert parse_c2m(worker["command"]) == ["worker"]
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert "replicas" in worker["deploy"], "workers scale with deploy.replicas"
    assert str(API_PORT) in [str(p) for p in worker["expose"]]
    assert "ports" not in worker, "a fixed host port would stop replicas > 1"
    for name in ("topics", "worker", "simulator"):
        service = services[name]
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        check_env(service["environment"], f"compose service {name}")
        parse_c2m(service["command"])


def test_compose_prometheus_and_grafana_use_the_repo_files() -> None:
    services = compose()["services"]
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
    prom_mounts = services["prometheus"]["volumes"]
    assert "./prometheus/prometheus.compose.yml:/etc/prometheus/prometheus.yml:ro" in prom_mounts
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in prom_mounts
    grafana = services["grafana"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert grafana["environment"]["PROMETHEUS_URL"] == "http://prometheus:9090"
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.compose.yml").read_text())
    assert scrape["scrape_configs"][0]["dns_sd_configs"][0]["names"] == ["worker"]  # the service name


# --- Kubernetes ---------------------------------------------------------------------------------

def k8s_objects() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def k8s(kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """A container's environment: its envFrom ConfigMaps, then its own env entries."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(k8s("ConfigMap", source["configMapRef"]["name"])["data"])
    env.update({e["name"]: e.get("value", "") for e in container.get("env", [])})
    return env


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    files = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert all(o["metadata"].get("namespace", "c2m") == "c2m" for o in k8s_objects())
    for cm in (o for o in k8s_objects() if o["kind"] == "ConfigMap"):
        assert all(isinstance(v, str) for v in cm["data"].values()), f"{cm['metadata']['name']}: quote values"


def test_worker_deployment_probes_healthz_on_6066() -> None:
    deployment = k8s("Deployment", "c2m-worker")
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (worker,) = pod["spec"]["containers"]
    assert worker["command"] == ["c2m"] and parse_c2m(worker["args"]) == ["worker"]
    assert [p["containerPort"] for p in worker["ports"]] == [API_PORT]
    for probe in ("livenessProbe", "readinessProbe"):
        get = worker[probe]["httpGet"]
        assert get["path"] == "/healthz" and get["port"] == API_PORT, probe
    env = container_env(worker)
    check_env(env, "worker Deployment")
    mounts = {m["name"]: m["mountPath"] for m in worker["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert env["C2M_TOPICS_FILE"] == f"{mounts['topics']}/topics.yaml"
    assert volumes["topics"]["configMap"]["name"] == "c2m-topics"
    assert env["C2M_DATA_DIR"].startswith(mounts["state"])
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(API_PORT)


def test_metrics_service_selects_the_workers() -> None:
    service = k8s("Service", "c2m-worker-metrics")
    pod_labels = k8s("Deployment", "c2m-worker")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == API_PORT and port["name"] == "metrics"
    scrape = yaml.safe_load(k8s("ConfigMap", "c2m-prometheus")["data"]["prometheus.yml"])
    (job,) = scrape["scrape_configs"]
    assert job["job_name"] == "c2m-worker"
    assert job["relabel_configs"][0]["regex"] == f"{service['metadata']['name']};{port['name']}"


def test_topics_job_runs_c2m_topics_apply() -> None:
    job = k8s("Job", "c2m-topics-apply")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["c2m"] and parse_c2m(container["args"]) == ["topics", "apply"]
    assert pod["restartPolicy"] in ("OnFailure", "Never")
    check_env(container_env(container), "topics-apply Job")
    (volume,) = pod["volumes"]
    assert volume["configMap"]["name"] == "c2m-topics"
    assert container["args"][container["args"].index("--file") + 1] == (
        f"{container['volumeMounts'][0]['mountPath']}/topics.yaml")


def test_topics_configmap_is_the_repo_topics_yaml() -> None:
    held = yaml.safe_load(k8s("ConfigMap", "c2m-topics")["data"]["topics.yaml"])
    assert held == yaml.safe_load((REPO_ROOT / "topics.yaml").read_text()), (
        "deploy/k8s/topics-configmap.yaml is stale: regenerate its data from topics.yaml "
        "(keep the header, then: sed 's/^/    /; s/^    $//' topics.yaml)")


# --- .ci/run ------------------------------------------------------------------------------------

CI_RUN = REPO_ROOT / ".ci" / "run"


def fake_bin(tmp_path: Path, present: list[str]) -> tuple[Path, Path]:
    """A PATH with stub apt-get, sudo, make and `present` commands that log their calls."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for name in ("apt-get", "sudo", "make", *present):
        stub = bin_dir / name
        body = 'exec "$@"' if name == "sudo" else "exit 0"
        stub.write_text(f'#!/bin/bash\necho "{name} $*" >> {log}\n{body}\n')
        stub.chmod(0o755)
    for tool in ("dirname", "id"):  # what .ci/run needs from coreutils
        (bin_dir / tool).symlink_to(next(Path(d) / tool for d in ("/usr/bin", "/bin") if (Path(d) / tool).exists()))
    return bin_dir, log


def run_ci(bin_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/bash", str(CI_RUN)], env={"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/")},
                          capture_output=True, text=True, timeout=60)


def test_ci_run_installs_missing_system_packages_then_runs_make_test(tmp_path: Path) -> None:
    bin_dir, log = fake_bin(tmp_path, present=["java", "mvn", "chromium"])
    proc = run_ci(bin_dir)
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    installs = [c for c in calls if c.startswith("apt-get install")]
    assert len(installs) == 1 and installs[0].split()[-1] == "prometheus", calls
    assert "-y" in installs[0].split()
    assert calls[-1] == "make test", calls


def test_ci_run_installs_nothing_when_everything_is_there(tmp_path: Path) -> None:
    bin_dir, log = fake_bin(tmp_path, present=["java", "mvn", "prometheus", "promtool", "chromium"])
    proc = run_ci(bin_dir)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().splitlines() == ["make test"]


def test_ci_run_is_an_executable_bash_script() -> None:
    assert os.access(CI_RUN, os.X_OK)
    subprocess.run(["/bin/bash", "-n", str(CI_RUN)], check=True)
