"""What a training run cost: wall time, device-seconds, peak memory and, on NVIDIA GPUs, energy."""

from __future__ import annotations

import resource
import threading
import time
import weakref
from typing import Any

import psutil
import torch

RSS_SAMPLE_S = 0.1


def _lifetime_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


class PeakRss:
    """Peak resident memory of one fit: this process plus, with `workers`, its worker processes
    (torchrun and its ranks), summed, sampled every RSS_SAMPLE_S in a background thread. The
    kernel's high-water mark is the process lifetime's, not the fit's; when the fit raised it,
    it is this process's exact peak and counts too (a spike between samples is not missed)."""

    def __init__(self, workers: bool = False) -> None:
        self._process, self._workers = psutil.Process(), workers
        self._lifetime_before = _lifetime_peak_bytes()
        self._peak = self._sample()
        self._done = threading.Event()
        # the thread holds only a weak reference: a fit that raises (a pruned trial) never calls
        # stop_mb, and its sampler must not outlive it
        self._thread = threading.Thread(target=_watch, args=(weakref.ref(self), self._done), name="mlplat-peak-rss",
                                        daemon=True)
        self._thread.start()

    def _sample(self) -> int:
        total = self._process.memory_info().rss
        if self._workers:
            for child in self._process.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:  # exited between listing and reading
                    pass
        return total

    def stop_mb(self) -> float:
        self._done.set()
        self._thread.join()
        peak = max(self._peak, self._sample())
        lifetime = _lifetime_peak_bytes()
        if lifetime > self._lifetime_before:
            peak = max(peak, lifetime)
        return peak / 2**20


def _watch(ref: weakref.ref[PeakRss], done: threading.Event) -> None:
    while not done.wait(RSS_SAMPLE_S):
        sampler = ref()
        if sampler is None:
            return
        sampler._peak = max(sampler._peak, sampler._sample())
        del sampler


class _Nvml:
    """Total energy counters of the GPUs in use; every failure degrades to 'unavailable'."""

    def __init__(self, indices: list[int]) -> None:
        self.handles: list[Any] = []
        self.reason = ""
        try:
            import pynvml

            pynvml.nvmlInit()
            self.pynvml = pynvml
            for index in indices:
                self.handles.append(self._handle(index))
        except Exception as exc:  # no driver, no pynvml, unsupported GPU
            self.handles, self.reason = [], f"unavailable: {type(exc).__name__}: {exc}"

    def _handle(self, index: int) -> Any:
        try:  # CUDA_VISIBLE_DEVICES renumbers devices: match by UUID
            uuid = str(torch.cuda.get_device_properties(index).uuid)
            return self.pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        except Exception:
            return self.pynvml.nvmlDeviceGetHandleByIndex(index)

    def millijoules(self) -> float | None:
        if not self.handles:
            return None
        try:
            return float(sum(self.pynvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self.handles))
        except Exception as exc:
            self.handles, self.reason = [], f"unavailable: {type(exc).__name__}: {exc}"
            return None


class ComputeMeter:
    """Measure one training call. `devices` = how many devices (or processes) worked in parallel."""

    def __init__(self, device: torch.device, devices: int = 1) -> None:
        self.device, self.devices = device, devices
        cuda = device.type == "cuda"
        first = device.index or 0
        self._nvml = _Nvml(list(range(first, first + devices))) if cuda else None
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        self._energy0 = self._nvml.millijoules() if self._nvml else None
        self._rss = PeakRss(workers=devices > 1)  # more than one device: DDP worker processes
        self._t0 = time.perf_counter()

    def stop(self, peak_device_mb: float | None = None) -> dict[str, Any]:
        wall = time.perf_counter() - self._t0
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
            own = torch.cuda.max_memory_allocated(self.device) / 2**20
            peak_device_mb = max(own, peak_device_mb or 0.0)
        energy1 = self._nvml.millijoules() if self._nvml else None
        energy = None if self._energy0 is None or energy1 is None else (energy1 - self._energy0) / 1000
        if energy is not None:
            source = "nvml"
        else:
            source = self._nvml.reason if self._nvml else "unavailable: not a CUDA device"
        return {
            "device": str(self.device),
            "devices": self.devices,
            "wall_s": wall,
            "device_seconds": wall * self.devices,
            "peak_host_rss_mb": self._rss.stop_mb(),
            "peak_device_memory_mb": peak_device_mb,
            "energy_j": energy,
            "energy_source": source,
        }
