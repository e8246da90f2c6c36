"""The run store: `runs/<run-id>/` per run, atomic model publishing, and a `latest` pointer.

A model is published by copying the staged model into a hidden temporary directory of
the run, renaming it to `model/` (atomic on one filesystem), then replacing the `latest`
symlink atomically. A failed or interrupted run never gets a `model/`, so `latest` keeps
pointing at the last good one.

A running run records its process (pid, its start time, host) and touches `.heartbeat` every
HEARTBEAT_EVERY_S; `Run.status()` reports a "running" run whose process is gone (or, on another host,
whose heartbeat is stale) as "interrupted". Temporary files (`.*.tmp-*`) a crash leaves are removed
when the run fails or is resumed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlplat.errors import UsageError
from mlplat.spec import run_id_ok

LATEST = "latest"
RUN_JSON, METRICS_JSON, SPEC_YAML = "run.json", "metrics.json", "spec.yaml"
HEARTBEAT = ".heartbeat"
HEARTBEAT_EVERY_S = 30.0
HEARTBEAT_STALE_S = 300.0  # ten missed beats: the process on another host is gone
TEMPORARY = ".*.tmp-*"  # what write_json_atomic and publish stage before their rename
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


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
        data = {**self.record(), **fields}
        try:
            write_json_atomic(self.dir / RUN_JSON, data)
        except OSError as exc:
            if exc.errno not in DISK_FULL:
                raise
            # a full disk has no room for a second copy; rewritten in place, the old file's blocks are reused,
            # so the run's status (failed) is still recorded
            (self.dir / RUN_JSON).write_text(_json_text(data))

    def status(self) -> str:
        """The recorded status, except that a run recorded as running whose process is gone is "interrupted"."""
        record = self.record()
        status = str(record.get("status", "unknown"))
        return "interrupted" if status == "running" and self._process_gone(record) else status

    def _process_gone(self, record: dict[str, Any]) -> bool:
        pid = record.get("pid")
        if record.get("host") == socket.gethostname() and isinstance(pid, int):
            return not _process_alive(pid, record.get("pid_started"))
        heartbeat = self.dir / HEARTBEAT
        return heartbeat.is_file() and time.time() - heartbeat.stat().st_mtime > HEARTBEAT_STALE_S

    def claim(self) -> None:
        """Record this process as the one running the run (what `status()` checks)."""
        pid = os.getpid()
        self.update(status="running", error=None, pid=pid, pid_started=_process_start(pid), host=socket.gethostname())
        (self.dir / HEARTBEAT).touch()

    @contextlib.contextmanager
    def heartbeat(self, every_s: float = HEARTBEAT_EVERY_S) -> Iterator[None]:
        """Touch `.heartbeat` every `every_s` while the body runs (a daemon thread: it dies with the process)."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(every_s):
                with contextlib.suppress(OSError):  # a missed beat is no reason to fail the run
                    (self.dir / HEARTBEAT).touch()

        thread = threading.Thread(target=beat, name=f"mlplat-heartbeat-{self.id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def clean_leftovers(self) -> list[str]:
        """Remove the temporary files and directories a crashed write or publish left; returns their names."""
        removed = []
        for path in self.dir.glob(TEMPORARY):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path.name)
        return removed

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
        run.claim()
        return run

    def check_resumable(self, run: Run) -> None:
        """Refuse to resume a run that finished (it has a model, or succeeded) or whose process still runs."""
        record, status = run.record(), run.status()
        if run.model_dir.exists() or status == "succeeded":
            where = f"; its model is {run.model_dir}" if run.model_dir.exists() else ""
            pointer = " (latest points at it)" if self.latest_id() == run.id else ""
            raise UsageError(f"run {run.id} already finished (status: {status}{where}{pointer}); "
                             "--resume continues an interrupted or failed run; start a new run instead")
        if status == "running":
            raise UsageError(f"run {run.id} is still running (pid {record.get('pid')} on {record.get('host')}); "
                             "wait for it or stop it before --resume")

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
        if run.model_dir.exists():
            raise UsageError(f"run {run.id} already has a published model: {run.model_dir}")
        staging = run.dir / f".model.tmp-{secrets.token_hex(4)}"
        try:
            shutil.copytree(staged_model, staging)
            _fsync_tree(staging)
            staging.rename(run.model_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # a half copy is never left behind
            raise
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
    write_text_atomic(path, _json_text(data))


def write_text_atomic(path: Path, text: str) -> None:
    """Readers see the old file or the new one; a failed write (a full disk) leaves no temporary file."""
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _json_text(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks (Linux /proc): tells a live run from a reused pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _process_alive(pid: int, started: Any) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    now = _process_start(pid)
    return started is None or now is None or now == started


def _fsync_tree(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
