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
    result = subprocess.run([sys.executable, "-m", "mlplat", "demo", str(spec_path), "--runs-dir", str(tmp_path / "runs")],
                            capture_output=True, text=True, timeout=600, cwd=REPO, env={"COLUMNS": "200", **_env()})
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert re.search(r"predict \(3 rows keyed by feature name\) → \['(benign|malignant)'", out)
    assert re.search(r"explain \(\d+ ms\) top attributions: [\w ]+=[+-]\d", out)
    windows = re.findall(r"drift share (\d\.\d\d)", out)
    assert len(windows) == 4 and float(windows[0]) < float(windows[-1])  # the shift is seen
    assert re.search(r'mlplat_drift_share\{model="demo-tiny"\} \d', out)
    assert re.search(r'mlplat_generalization_gap\{metric="accuracy",model="demo-tiny"\} -?\d', out)
    assert "demo done" in out and (tmp_path / "runs" / "latest" / "serve.log").is_file()


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)
