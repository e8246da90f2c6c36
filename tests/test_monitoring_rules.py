"""Alert rules and dashboard: promtool check + unit tests (firing and not-firing per alert), the
PrometheusRule equals the plain rules file, and every metric the rules and dashboard query is
exported by the monitor service."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "manifests" / "base" / "monitoring"
RULES, RULE_TESTS = BASE / "mlplat-monitoring.rules.yaml", REPO / "tests" / "monitoring" / "rules_test.yaml"
PROMTOOL = shutil.which("promtool")
# served by the predictor (KServe's latency histogram), not by the monitor
PREDICTOR_METRICS = {"request_predict_seconds_bucket"}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool missing: apt-get install prometheus"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)


def _alerts() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r]


def test_promtool_check_rules() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = _promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    broken = RULES.read_text().replace("mlplat_generalization_gap{metric=\"accuracy\"}) < -3",
                                       "mlplat_generalization_gap{metric=\"accuracy\"}) < -30")
    (tmp_path / "rules.yaml").write_text(broken)
    tests = yaml.safe_load(RULE_TESTS.read_text())
    tests["rule_files"] = [str(tmp_path / "rules.yaml")]
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    assert _promtool("test", "rules", str(tmp_path / "tests.yaml")).returncode != 0


def test_every_alert_is_annotated_and_tested_both_ways() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for t in tests for case in t["alert_rule_test"]]
    for rule in _alerts():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), rule["alert"]
        anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert f"## {rule['alert']}".lower().replace("## ", "") == anchor
        assert f"## {rule['alert']}" in (BASE / "runbook.md").read_text()
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"{rule['alert']}: no firing case"
        assert any(not c["exp_alerts"] for c in mine), f"{rule['alert']}: no not-firing case"
        assert rule["for"], rule["alert"]


def test_prometheusrule_matches_plain_rules_file() -> None:
    operator = yaml.safe_load((BASE / "prometheusrule.yaml").read_text())
    assert operator["kind"] == "PrometheusRule"
    assert operator["spec"] == yaml.safe_load(RULES.read_text())


def queried_metrics() -> set[str]:
    exprs = [r["expr"] for r in _alerts()]
    dashboard = json.loads((BASE / "grafana-dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return {m for e in exprs for m in re.findall(r"\b((?:mlplat|request)_[a-z0-9_]+)\b", e)}


def test_dashboard_and_rules_query_metrics_the_server_exports(trained_model_dir: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from mlplat.modeldir import copy_model_dir
    from mlplat.monitoring.inputs import InputPolicy
    from mlplat.monitoring.monitor import Monitor, MonitorSettings
    from mlplat.monitoring.service import create_app

    model_dir = tmp_path / "model"
    copy_model_dir(trained_model_dir, model_dir)
    monitor = Monitor(model_dir, MonitorSettings(interval_s=3600, min_labels=1))
    rows = monitor.reference()[monitor.feature_names].to_numpy(np.float32)[:20]
    monitor.window.record(rows, np.zeros(20, dtype=np.int64), ["r"])
    monitor.feedback(["r/0"], [0])
    client = TestClient(create_app({monitor.name: monitor}, InputPolicy(insecure=True)))  # inputs open to anyone
    assert client.post(f"/v1/models/{monitor.name}/monitor/evaluate").status_code == 200
    exported = {line.split("{")[0].split(" ")[0] for line in client.get("/metrics").text.splitlines() if not line.startswith("#")}
    queried = queried_metrics()
    assert {"mlplat_feature_drift_effect_size", "mlplat_generalization_gap", "mlplat_http_requests_total"} <= queried
    missing = queried - exported - PREDICTOR_METRICS
    assert not missing, f"queried but not exported: {sorted(missing)}"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
@pytest.mark.parametrize(("overlay", "namespace"), [("dev", "mlplat-dev"), ("prod", "mlplat")])
def test_overlays_render_the_monitoring_stack(overlay: str, namespace: str) -> None:
    done = subprocess.run(["kubectl", "kustomize", str(REPO / "manifests" / "overlays" / overlay)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(done.stdout) if d}
    wanted = [("Deployment", "mlplat-monitor"), ("Service", "mlplat-monitor"), ("ServiceMonitor", "mlplat-monitor"),
              ("PersistentVolumeClaim", "mlplat-monitor-state"), ("PrometheusRule", "mlplat-monitoring"),
              ("ConfigMap", "mlplat-grafana-dashboard")]
    for key in wanted:
        assert key in docs, f"{overlay}: {key} not rendered"
        assert docs[key]["metadata"]["namespace"] == namespace, key
    assert docs[("PrometheusRule", "mlplat-monitoring")]["spec"] == yaml.safe_load(RULES.read_text())
    dashboard = docs[("ConfigMap", "mlplat-grafana-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["mlplat-dashboard.json"]) == json.loads((BASE / "grafana-dashboard.json").read_text())
    # the ServiceMonitor finds the Service, the Service the pods, on a port the container opens
    service, deployment = docs[("Service", "mlplat-monitor")], docs[("Deployment", "mlplat-monitor")]
    scrape = docs[("ServiceMonitor", "mlplat-monitor")]["spec"]
    assert scrape["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert scrape["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    container = pod["spec"]["containers"][0]
    assert {p["name"] for p in container["ports"]} >= {p["targetPort"] for p in service["spec"]["ports"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == "mlplat-monitor-state"
    # every option the Deployment passes is one `mlplat monitor` accepts
    help_text = subprocess.run([str(Path(sys.executable).with_name("mlplat")), "monitor", "--help"],
                               capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"}).stdout
    options = [a for a in container["args"] if a.startswith("--")]
    assert container["args"][0] == "monitor" and options
    assert all(option in help_text for option in options), (options, help_text)
