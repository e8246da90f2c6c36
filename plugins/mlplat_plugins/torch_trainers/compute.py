"""What a training run cost: wall time, device-seconds, peak memory and, on NVIDIA GPUs, energy."""

from __future__ import annotations

import resource
import time
from typing import Any

import torch


def peak_host_rss_mb() -> float:
    """Peak resident set size of this process or any finished child (torchrun workers), in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024  # Linux reports KiB


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
            "peak_host_rss_mb": peak_host_rss_mb(),
            "peak_device_memory_mb": peak_device_mb,
            "energy_j": energy,
            "energy_source": source,
        }
