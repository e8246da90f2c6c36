"""The run store: `runs/<run-id>/` per run, atomic model publishing, and a `latest` pointer.

A model is published by copying the staged model into a hidden temporary directory of
the run, renaming it to `model/` (atomic on one filesystem), then replacing the `latest`
symlink atomically. A failed or interrupted run never gets a `model/`, so `latest` keeps
pointing at the last good one.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlplat.errors import UsageError
from mlplat.spec import run_id_ok

LATEST = "latest"
RUN_JSON, METRICS_JSON, SPEC_YAML = "run.json", "metrics.json", "spec.yaml"


@dataclass(frozen=True)
class Run:
    id: str
    dir: Path

    def step_dir(self, step: str) -> Path:
        path = self.dir / "steps" / step
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def model_dir(self) -> Path:
        return self.dir / "model"

    def record(self) -> dict[str, Any]:
        path = self.dir / RUN_JSON
        return json.loads(path.read_text()) if path.is_file() else {"id": self.id, "status": "unknown"}

    def update(self, **fields: Any) -> None:
        write_json_atomic(self.dir / RUN_JSON, {**self.record(), **fields})

    def metrics(self) -> dict[str, Any]:
        path = self.dir / METRICS_JSON
        return json.loads(path.read_text()) if path.is_file() else {}


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def create(self, name: str, run_id: str | None = None) -> Run:
        run_id = run_id or f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        run = Run(run_id, self._path(run_id))
        run.dir.mkdir(parents=True, exist_ok=False)
        run.update(id=run_id, status="running", started_at=time.time())
        return run

    def get(self, run_id: str) -> Run:
        """A run by id, or `latest`; ids that could escape the store are refused."""
        if run_id == LATEST:
            link = self.root / LATEST
            if not link.is_symlink():
                raise UsageError(f"no published model yet in {self.root}")
            run_id = os.readlink(link)
        path = self._path(run_id)
        if not path.is_dir():
            raise UsageError(f"run not found: {run_id} (in {self.root})")
        return Run(run_id, path)

    def list(self) -> list[Run]:
        if not self.root.is_dir():
            return []
        runs = [Run(p.name, p) for p in self.root.iterdir() if p.is_dir() and not p.is_symlink() and run_id_ok(p.name)]
        return sorted(runs, key=lambda r: r.record().get("started_at", 0.0))

    def latest_id(self) -> str | None:
        link = self.root / LATEST
        return os.readlink(link) if link.is_symlink() else None

    def publish(self, run: Run, staged_model: Path) -> Path:
        staging = run.dir / f".model.tmp-{secrets.token_hex(4)}"
        shutil.copytree(staged_model, staging)
        _fsync_tree(staging)
        staging.rename(run.model_dir)
        pointer = self.root / f".latest.tmp-{secrets.token_hex(4)}"
        os.symlink(run.id, pointer)
        os.replace(pointer, self.root / LATEST)
        return run.model_dir

    def _path(self, run_id: str) -> Path:
        if not run_id_ok(run_id):
            raise UsageError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-'")
        path = (self.root / run_id).resolve()
        if path.parent != self.root:
            raise UsageError(f"run id {run_id!r} escapes the runs directory")
        return path


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def _fsync_tree(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
