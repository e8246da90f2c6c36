"""Integrity checks a model directory passes before anything calls it ready.

A corrupt directory must be refused at load, naming the file and the field, never served and then
answer 500 or wrong labels. `mlplat.modeldir.LoadedModel.load` runs these checks, in an order that
never allocates what a corrupt file declares:

1. the manifest on its own (`check_manifest`): class names, feature names, preprocessing numbers;
2. the safetensors header (`read_safetensors_header`): parsed by hand, checked against the file size,
   so a truncated file is named before the tensors are read;
3. the network built on PyTorch's `meta` device (no memory) from the manifest's architecture
   (`check_network`): its state-dict shapes and dtypes against the header, its input width against
   the features, its output width against the classes;
4. the tensors themselves (`load_tensors`): every floating value finite.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlplat.errors import ModelDirError
from mlplat.manifest import ImagePreprocessing

if TYPE_CHECKING:
    import torch

    from mlplat.manifest import ModelManifest

# bytes per element of each safetensors dtype (the format's own names)
SAFETENSORS_ITEMSIZE: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}
MAX_HEADER_BYTES = 100 * 2**20  # the safetensors library's own limit


@dataclass(frozen=True)
class TensorHeader:
    """One tensor as a safetensors header declares it."""

    dtype: str
    shape: tuple[int, ...]


def read_safetensors_header(path: Path) -> dict[str, TensorHeader]:
    """Each tensor's dtype and shape from the file's header, validated against the file's size; no tensor is read."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
            if length < 0 or length > min(MAX_HEADER_BYTES, size - 8):
                raise ModelDirError(f"{path}: not a complete safetensors file ({size} bytes; header length "
                                    f"{length if length >= 0 else 'unreadable'}): truncated or another format")
            raw = handle.read(length)
    except OSError as exc:
        raise ModelDirError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelDirError(f"{path}: safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ModelDirError(f"{path}: safetensors header is not a JSON object")
    data_bytes = size - 8 - length
    tensors: dict[str, TensorHeader] = {}
    covered = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        tensors[name] = _tensor_header(path, name, entry, data_bytes)
        covered = max(covered, entry["data_offsets"][1])
    if covered != data_bytes:
        raise ModelDirError(f"{path}: the header's tensors cover {covered} bytes but the file holds {data_bytes} "
                            "bytes of data")
    return tensors


def _tensor_header(path: Path, name: str, entry: object, data_bytes: int) -> TensorHeader:
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict):
        raise ModelDirError(f"{where}: header entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in SAFETENSORS_ITEMSIZE:
        raise ModelDirError(f"{where}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ModelDirError(f"{where}: shape {shape!r} is not a list of non-negative integers")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise ModelDirError(f"{where}: data_offsets {offsets!r} are not [begin, end]")
    if offsets[1] > data_bytes:
        raise ModelDirError(f"{where}: ends at byte {offsets[1]} of the data, but the file holds {data_bytes} "
                            "(truncated)")
    expected = math.prod(shape) * SAFETENSORS_ITEMSIZE[dtype]
    if offsets[1] - offsets[0] != expected:
        raise ModelDirError(f"{where}: {dtype} {shape} needs {expected} bytes, the header gives it "
                            f"{offsets[1] - offsets[0]}")
    return TensorHeader(dtype, tuple(shape))


def check_manifest(manifest: ModelManifest, source: Path) -> None:
    """What the manifest must satisfy on its own: distinct names, and preprocessing one finite, positive scale per input."""
    features = manifest.feature_names
    _require_distinct(features, "features", source)
    if manifest.task == "classification":
        if len(manifest.classes) < 2:
            raise ModelDirError(f"{source}: classes: a classifier needs at least 2 classes, got {manifest.classes}")
        _require_distinct(manifest.classes, "classes", source)
    else:  # a regression predicts one value: no class names, and the target scaling the network was trained on
        if manifest.classes:
            raise ModelDirError(f"{source}: classes: a regression model has no classes, got {manifest.classes[:5]}")
        if manifest.target is None:
            raise ModelDirError(f"{source}: target: a regression model needs its target scaling")
        if not math.isfinite(manifest.target.mean) or not (math.isfinite(manifest.target.scale)
                                                           and manifest.target.scale > 0):
            raise ModelDirError(f"{source}: target: mean must be finite and scale finite and positive, got "
                                f"mean {manifest.target.mean}, scale {manifest.target.scale}")
    if isinstance(manifest.preprocessing, ImagePreprocessing):
        _check_image_manifest(manifest, source)
        return
    if manifest.image_shape is not None and math.prod(manifest.image_shape) != len(features):
        raise ModelDirError(f"{source}: image_shape: {manifest.image_shape} has {math.prod(manifest.image_shape)} "
                            f"pixels, but there are {len(features)} features")
    numbers = manifest.preprocessing
    for field, values in (("mean", numbers.mean), ("scale", numbers.scale)):
        if len(values) != len(features):
            raise ModelDirError(f"{source}: preprocessing.{field}: {len(values)} values for {len(features)} features")
        bad = [i for i, v in enumerate(values) if not math.isfinite(v) or (field == "scale" and v <= 0)]
        if bad:
            need = "finite and positive" if field == "scale" else "finite"
            raise ModelDirError(f"{source}: preprocessing.{field}: must be {need}; feature {features[bad[0]]!r} "
                                f"has {values[bad[0]]}" + (f" ({len(bad)} features in all)" if len(bad) > 1 else ""))


def _check_image_manifest(manifest: ModelManifest, source: Path) -> None:
    """An image-file model: one image feature, the input shape [channels, *size], one finite mean and positive std per channel."""
    prep = manifest.preprocessing
    assert isinstance(prep, ImagePreprocessing)
    if len(manifest.features) != 1 or manifest.features[0].kind != "image" or manifest.features[0].dtype != "image":
        raise ModelDirError(f"{source}: features: an image model has one feature of kind and dtype 'image', got "
                            f"{[(f.name, f.kind) for f in manifest.features][:5]}")
    if any(v < 1 for v in prep.size):
        raise ModelDirError(f"{source}: preprocessing.size: must be positive, got {prep.size}")
    shape = [prep.channels, *prep.size]
    if manifest.image_shape is not None and list(manifest.image_shape) != shape:
        raise ModelDirError(f"{source}: image_shape: {manifest.image_shape} differs from the preprocessing's [channels, *size] {shape}")
    for field, values in (("mean", prep.mean), ("std", prep.std)):
        if len(values) != prep.channels:
            raise ModelDirError(f"{source}: preprocessing.{field}: {len(values)} values for {prep.channels} channels")
        if not all(math.isfinite(v) and (field == "mean" or v > 0) for v in values):
            raise ModelDirError(f"{source}: preprocessing.{field}: must be {'finite' if field == 'mean' else 'finite and positive'}, "
                                f"got {values}")


def _require_distinct(names: list[str], field: str, source: Path) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ModelDirError(f"{source}: {field}: repeated names {repeated[:5]}")


def torch_dtype_name(dtype: torch.dtype) -> str:
    """The safetensors name of a torch dtype (`F32` for torch.float32)."""
    import torch

    names = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
             torch.bool: "BOOL"}
    return names.get(dtype, str(dtype))


def check_network(probe: torch.nn.Module, manifest: ModelManifest, weights: Path, source: Path,
                  found: Mapping[str, TensorHeader], width: int | tuple[int, ...] | None = None) -> None:
    """`probe`, the manifest's architecture built on the meta device, against the weights' header and the manifest.

    `width` is the network's input width after preprocessing (default: one input per feature; encoded
    tabular models add missing indicators and put categorical codes last); an image model's is its (C, H, W)."""
    import torch

    expected = probe.state_dict()
    problems = [f"tensor {name!r} is missing" for name in expected if name not in found]
    problems += [f"tensor {name!r} is not part of the architecture" for name in found if name not in expected]
    for name, tensor in expected.items():
        if name not in found:
            continue
        declared, wanted = found[name], (torch_dtype_name(tensor.dtype), tuple(tensor.shape))
        if (declared.dtype, declared.shape) != wanted:
            problems.append(f"tensor {name!r} is {declared.dtype} {list(declared.shape)}, the architecture "
                            f"needs {wanted[0]} {list(wanted[1])}")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ModelDirError(f"{weights}: does not match architecture {manifest.architecture} in {source}: "
                            + "; ".join(problems[:3]) + more)
    width = len(manifest.features) if width is None else width
    probe.eval()
    try:
        with torch.no_grad():
            output = probe(torch.empty(2, *(width if isinstance(width, tuple) else (width,)), device="meta"))
    except (RuntimeError, ValueError) as exc:
        raise ModelDirError(f"{source}: features: the architecture does not take {width} inputs "
                            f"({str(exc).splitlines()[0]})") from None
    if manifest.task == "classification" and tuple(output.shape) != (2, len(manifest.classes)):
        raise ModelDirError(f"{source}: classes: {len(manifest.classes)} class names for a network with "
                            f"{list(output.shape)[1:]} outputs")
    if manifest.task == "regression" and tuple(output.shape) not in ((2,), (2, 1)):
        raise ModelDirError(f"{source}: task: a regression network must give one value per row, this one gives "
                            f"{list(output.shape)[1:]} outputs")


def load_tensors(path: Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file whose header passed the checks; a non-finite weight is refused."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path), device=device)
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise ModelDirError(f"{path}: cannot load tensors ({exc})") from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ModelDirError(f"{path}: tensor {name!r} has {bad} non-finite values (NaN or inf)")
    return tensors


def load_arrays(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """Named numpy arrays from a safetensors file (an explainer's state): the header checked, each named array
    present, every floating value finite."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    found = read_safetensors_header(path)
    missing = [n for n in names if n not in found]
    if missing:
        raise ModelDirError(f"{path}: arrays {missing} are recorded in the manifest but not stored")
    try:
        arrays = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ModelDirError(f"{path}: cannot load arrays ({exc})") from None
    for name, array in arrays.items():
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise ModelDirError(f"{path}: array {name!r} has non-finite values (NaN or inf)")
    return arrays
