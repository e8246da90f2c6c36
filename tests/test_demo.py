"""`mlplat demo` (the README's main job) end to end on a small spec: pipeline, then the real
server answering predict and explain, traffic with labels, drift gauges from /metrics."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO, TINY_SPEC


def test_demo_runs_serves_explains_and_exports_drift(tmp_path: Path) -> None:
    spec = {**TINY_SPEC, "name": "demo-tiny",
            "steps": {**TINY_SPEC["steps"], "explain": {"plugin": "integrated_gradients"}, "drift": {"plugin": "evidently"}}}
    spec_path = tmp_path / "demo.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    result = run_demo(spec_path, tmp_path)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert re.search(r"predict \(3 rows keyed by feature name\) → \['(benign|malignant)'", out)
    assert re.search(r"explain \(\d+ ms\) top attributions: [\w ]+=[+-]\d", out)
    windows = re.findall(r"drift share (\d\.\d\d)", out)
    assert len(windows) == 4 and float(windows[0]) < float(windows[-1])  # the shift is seen
    assert re.search(r'mlplat_drift_share\{model="demo-tiny"\} \d', out)
    assert re.search(r'mlplat_generalization_gap\{metric="accuracy",model="demo-tiny"\} -?\d', out)
    assert "demo done" in out and (tmp_path / "runs" / "latest" / "serve.log").is_file()


def run_demo(spec_path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    import os

    wide = {**os.environ, "COLUMNS": "400"}  # rich must not wrap the long tmp paths the assertions read
    return subprocess.run([sys.executable, "-m", "mlplat", "demo", str(spec_path), "--runs-dir", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=900, cwd=REPO, env=wide)


def test_image_demo_serves_explains_and_alerts_on_perturbed_images(tmp_path: Path) -> None:
    """The second main job as shipped (pipelines/images_demo.yaml): train, serve PNGs, explain, drift alerts."""
    result = run_demo(REPO / "pipelines" / "images_demo.yaml", tmp_path)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert re.search(r"predict \(3 PNGs as .*\) → \[", out)
    overlay = re.search(r"overlay written to (\S+)", out)
    assert overlay and Path(overlay.group(1)).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", out[-3000:]
    alerts = dict(re.findall(r"^([\w .=,-]+?): 300 images \+ labels → .*prediction drift (True|False)", out, re.M))
    assert alerts.get("in-distribution") == "False", out[-3000:]
    assert "True" in [alerts.get(f"noise sigma=90, window {k}") for k in (1, 2, 3)], out[-3000:]
    assert re.search(r'mlplat_prediction_drift\S*\{.*model="images-demo".*\} \d', out)
    assert "demo done" in out
