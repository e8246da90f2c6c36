"""The `images` validator: every file of every split is read once (bytes, header, pixels), and each check
below becomes one CheckResult that gates by its severity, naming the files it is about.

- images.undecodable / truncated / too_large: what `mlplat.images.open_image` refuses, per file
- images.mode: files whose mode is not the model's (RGB or L), e.g. CMYK, palette (P), RGBA, 16-bit
- images.class_counts: training images per class, and classes absent from validation or test
- images.sizes: the distribution of (width, height); images smaller than the input or of odd aspect
- images.duplicates / duplicate_labels / leakage: identical files (sha256 of the bytes) within training,
  with different labels, and shared between training and validation/test
- images.channels: per-channel mean and std of each split at the input size; a constant channel, or a
  split whose means sit far from training's
- images.label_noise: confident learning (the tabular validator's detector) on out-of-fold probabilities of
  models on the training images' pooled pixels and of the platform's small CNN on the images shrunk
  (label_noise.py); not assessed when even they cannot tell the classes apart, since their own errors
  would be the suspects
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
from mlplat.contracts import StepContext
from mlplat.contracts.validator import CheckResult, Severity, ValidationReport
from mlplat.data import SPLIT_NAMES, Splits
from mlplat.errors import UsageError
from mlplat.images import IMAGE_COLUMN, BadImage, open_image, read_bytes, to_tensor
from mlplat.manifest import ImagePreprocessing
from mlplat.reports import html_table

from mlplat_plugins.image_validation import DEFAULT_SEVERITY, ImageValidatorConfig
from mlplat_plugins.image_validation.label_noise import shrunk

EXPECTED_MODES = {1: ("L",), 3: ("RGB",)}


@dataclass
class _Scan:
    """What reading one split's files found."""

    bad: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))  # reason -> (file, why)
    modes: list[tuple[str, str]] = field(default_factory=list)  # (file, mode) of unexpected modes
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) of decodable images
    hashes: list[str] = field(default_factory=list)  # per row ("" when unreadable)
    channel_means: list[np.ndarray] = field(default_factory=list)
    channel_squares: list[np.ndarray] = field(default_factory=list)
    small: list[np.ndarray | None] = field(default_factory=list)  # per row: [C, h, w] pixels shrunk for label noise (None: unreadable)


class ImageValidator:
    def __init__(self, config: ImageValidatorConfig) -> None:
        self.config = config

    def severity(self, check: str) -> Severity:
        return self.config.severity.get(check, DEFAULT_SEVERITY[check])

    def validate(self, splits: Splits, context: StepContext) -> ValidationReport:
        info = splits.info
        if info.image is None:
            raise UsageError("the images validator needs an image-file dataset (dataset.image)")
        prep = ImagePreprocessing(size=info.image["size"], channels=info.image["channels"], mean=[0.0] * info.image["channels"],
                                  std=[1.0] * info.image["channels"], max_pixels=info.image["max_pixels"])
        scans = {name: self._scan(getattr(splits, name).features[IMAGE_COLUMN].tolist(), prep) for name in SPLIT_NAMES}
        checks = [self._bad(scans, reason) for reason in ("undecodable", "truncated", "too_large")]
        checks.append(self._modes(scans, prep.channels))
        checks.append(self._class_counts(splits))
        checks.append(self._sizes(scans, prep))
        checks += self._duplicates(scans, splits)
        checks.append(self._channels(scans))
        findings_noise: dict[str, object] = {}
        if self.config.label_noise:
            check, findings_noise = self._label_noise(scans["train"], splits, context.seed)
            checks.append(check)
        bad = sorted({file for scan in scans.values() for found in scan.bad.values() for file, _ in found})
        findings: dict[str, object] = {"images": {"bad_files": bad}, **({"label_noise": findings_noise} if findings_noise else {})}
        schema = {"kind": "image", "image": dict(info.image), "classes": list(info.classes)}
        context.log(f"images: {sum(len(s.hashes) for s in scans.values())} files checked, {len(bad)} unusable")
        return ValidationReport(checks, schema, findings, self._sections(scans, splits))

    # --- reading ------------------------------------------------------------------------
    def _scan(self, locations: list[str], prep: ImagePreprocessing) -> _Scan:
        scan = _Scan()
        expected = EXPECTED_MODES[prep.channels]
        for location in locations:
            scan.small.append(None)
            try:
                data = read_bytes(location)
            except OSError as exc:
                scan.bad["undecodable"].append((location, f"cannot read: {exc.__class__.__name__}"))
                scan.hashes.append("")
                continue
            scan.hashes.append(hashlib.sha256(data).hexdigest())
            try:
                image = open_image(data, max_pixels=prep.max_pixels)
            except BadImage as exc:
                scan.bad[exc.reason].append((location, str(exc)))
                continue
            scan.sizes.append(image.size)
            if image.mode not in expected:
                scan.modes.append((location, image.mode))
            tensor = to_tensor(image, prep)
            if self.config.label_noise:  # kept small: what the pooled-pixel models and the CNN read
                side = max(self.config.label_noise_grid, self.config.label_noise_cnn_size if self.config.label_noise_cnn else 0)
                scan.small[-1] = shrunk(tensor[None].numpy(), side)[0]
            pixels = tensor.numpy().reshape(prep.channels, -1)
            scan.channel_means.append(pixels.mean(axis=1))
            scan.channel_squares.append((pixels**2).mean(axis=1))
        return scan

    def _named(self, files: list[str]) -> str:
        shown = ", ".join(files[: self.config.listed])
        return shown + (f" (and {len(files) - self.config.listed} more)" if len(files) > self.config.listed else "")

    # --- checks -------------------------------------------------------------------------
    def _bad(self, scans: dict[str, _Scan], reason: str) -> CheckResult:
        found = [(split, file, why) for split, scan in scans.items() for file, why in scan.bad.get(reason, [])]
        check = f"images.{reason}"
        if not found:
            return CheckResult(check, True, self.severity(check), f"no {reason.replace('_', ' ')} files", IMAGE_COLUMN, 0, 0)
        files = [file for _, file, _ in found]
        return CheckResult(check, False, self.severity(check), f"{len(found)} {reason.replace('_', ' ')} files: {self._named(files)}",
                           IMAGE_COLUMN, 0, len(found), {"files": [{"split": s, "file": f, "reason": w} for s, f, w in found]})

    def _modes(self, scans: dict[str, _Scan], channels: int) -> CheckResult:
        found = [(split, file, mode) for split, scan in scans.items() for file, mode in scan.modes]
        expected = EXPECTED_MODES[channels]
        if not found:
            return CheckResult("images.mode", True, self.severity("images.mode"), f"every image is {'/'.join(expected)}",
                               IMAGE_COLUMN, list(expected), [])
        modes = Counter(mode for _, _, mode in found)
        return CheckResult("images.mode", False, self.severity("images.mode"),
                           f"{len(found)} images are converted from another mode ({', '.join(f'{m}: {n}' for m, n in modes.items())}): "
                           + self._named([f"{file} ({mode})" for _, file, mode in found]),
                           IMAGE_COLUMN, list(expected), dict(modes),
                           {"files": [{"split": s, "file": f, "mode": m} for s, f, m in found]})

    def _class_counts(self, splits: Splits) -> CheckResult:
        classes, k = splits.info.classes, splits.info.n_classes
        counts = {name: np.bincount(getattr(splits, name).labels, minlength=k).tolist() for name in SPLIT_NAMES}
        few = [classes[i] for i, n in enumerate(counts["train"]) if n < self.config.min_images_per_class]
        absent = [f"{classes[i]} ({name})" for name in ("validation", "test") for i, n in enumerate(counts[name]) if n == 0]
        observed = {name: dict(zip(classes, counts[name], strict=True)) for name in SPLIT_NAMES}
        problems = ([f"fewer than {self.config.min_images_per_class} training images: {', '.join(few)}"] if few else []) + \
                   ([f"absent from a held-out split: {', '.join(absent)}"] if absent else [])
        message = "; ".join(problems) or f"{k} classes, {min(counts['train'])} to {max(counts['train'])} training images each"
        return CheckResult("images.class_counts", not problems, self.severity("images.class_counts"), message, "label",
                           f">= {self.config.min_images_per_class} per class", observed)

    def _sizes(self, scans: dict[str, _Scan], prep: ImagePreprocessing) -> CheckResult:
        sizes = [s for scan in scans.values() for s in scan.sizes]
        height, width = prep.size
        if not sizes:
            return CheckResult("images.sizes", False, self.severity("images.sizes"), "no decodable image", IMAGE_COLUMN)
        w, h = np.array([s[0] for s in sizes]), np.array([s[1] for s in sizes])
        small = (w < width) | (h < height)
        odd = np.maximum(w / h, h / w) > self.config.max_aspect_ratio
        share = float((small | odd).mean())
        common = Counter(f"{a}x{b}" for a, b in sizes).most_common(10)
        observed = {"width": _spread(w), "height": _spread(h), "most_common": dict(common),
                    "smaller_than_input": int(small.sum()), "odd_aspect": int(odd.sum())}
        passed = share <= self.config.max_odd_size_share
        message = (f"{len(sizes)} images, {len(common)}+ sizes (most common {common[0][0]}); {int(small.sum())} smaller than the "
                   f"input {width}x{height} (upsampled), {int(odd.sum())} of aspect beyond {self.config.max_aspect_ratio}")
        return CheckResult("images.sizes", passed, self.severity("images.sizes"), message, IMAGE_COLUMN,
                           f"<= {self.config.max_odd_size_share:.0%} small or odd", observed)

    def _duplicates(self, scans: dict[str, _Scan], splits: Splits) -> list[CheckResult]:
        rows: dict[str, list[tuple[str, str, int]]] = defaultdict(list)  # hash -> (split, file, label)
        for name, scan in scans.items():
            table = getattr(splits, name)
            for digest, file, label in zip(scan.hashes, table.features[IMAGE_COLUMN], table.labels, strict=True):
                if digest:
                    rows[digest].append((name, file, int(label)))
        groups = [found for found in rows.values() if len(found) > 1]
        within = [g for g in groups if sum(split == "train" for split, _, _ in g) > 1]
        conflicting = [g for g in groups if len({label for _, _, label in g}) > 1]
        leaked = [g for g in groups if any(s == "train" for s, _, _ in g) and any(s != "train" for s, _, _ in g)]
        classes = splits.info.classes

        def result(check: str, found: list[list[tuple[str, str, int]]], what: str) -> CheckResult:
            if not found:
                return CheckResult(check, True, self.severity(check), f"no {what}", IMAGE_COLUMN, 0, 0)
            named = [" = ".join(f"{file} [{split}, {classes[label]}]" for split, file, label in g) for g in found]
            return CheckResult(check, False, self.severity(check), f"{len(found)} groups of {what}: {self._named(named)}",
                               IMAGE_COLUMN, 0, len(found),
                               {"groups": [[{"split": s, "file": f, "label": classes[y]} for s, f, y in g] for g in found]})

        return [result("images.duplicates", within, "identical training images"),
                result("images.duplicate_labels", conflicting, "identical images with different labels"),
                result("images.leakage", leaked, "identical images in training and a held-out split")]

    def _channels(self, scans: dict[str, _Scan]) -> CheckResult:
        stats = {name: _channel_stats(scan) for name, scan in scans.items() if scan.channel_means}
        if "train" not in stats:
            return CheckResult("images.channels", False, self.severity("images.channels"), "no decodable training image")
        mean, std = stats["train"]
        problems = [f"training channel {c} is constant" for c, s in enumerate(std) if s < 1e-3]
        # a shift must be large (in pixel stds) and beyond sampling noise (a z-test on the per-image means)
        image_std = np.std(scans["train"].channel_means, axis=0)
        n_train = len(scans["train"].channel_means)
        for name, (other, _) in stats.items():
            if name == "train":
                continue
            shift = np.abs(other - mean) / np.maximum(std, 1e-3)
            noise = np.maximum(image_std, 1e-6) * np.sqrt(1 / n_train + 1 / len(scans[name].channel_means))
            z = np.abs(other - mean) / noise
            problems += [f"{name} channel {c} mean is {s:.2f} training stds off (z = {z[c]:.1f})" for c, s in enumerate(shift)
                         if s > self.config.max_channel_shift and z[c] > self.config.channel_z]
        observed = {name: {"mean": m.round(4).tolist(), "std": s.round(4).tolist()} for name, (m, s) in stats.items()}
        return CheckResult("images.channels", not problems, self.severity("images.channels"),
                           "; ".join(problems) or "channel statistics agree across splits", IMAGE_COLUMN,
                           f"shift <= {self.config.max_channel_shift} training stds", observed)

    def _label_noise(self, scan: _Scan, splits: Splits, seed: int) -> tuple[CheckResult, dict[str, object]]:
        from mlplat_plugins.image_validation.label_noise import detect

        classes, table, check = splits.info.classes, splits.train, "images.label_noise"
        rows = np.array([i for i, small in enumerate(scan.small) if small is not None], dtype=np.int64)
        y = table.labels[rows]
        counts = np.bincount(y, minlength=len(classes))
        folds = min(5, int(counts[counts > 0].min())) if len(rows) else 0
        if folds < 2 or (counts > 0).sum() < 2:
            return CheckResult(check, True, "info", "label noise not assessed: fewer than 2 training images in some class"), {}
        found = detect(np.stack([small for small in scan.small if small is not None]), y, len(classes), self.config, seed)
        accuracy, members, result = found.accuracy, found.members, found.result
        if result is None:
            return CheckResult(check, True, "info",
                               f"label noise not assessed: {'+'.join(members)} reach {accuracy:.2f} out-of-fold accuracy "
                               f"(< {self.config.min_label_noise_accuracy:g}), too low to tell mislabelled images from their own errors",
                               "label", f">= {self.config.min_label_noise_accuracy:g} out-of-fold accuracy", round(accuracy, 4)), {}
        share = len(result.suspects) / len(y)
        files = table.features[IMAGE_COLUMN].to_numpy()[rows[result.suspects]].tolist()
        suspects = [{"file": f, "row_id": r, "given": classes[g], "suggested": classes[s], "score": round(float(m), 4)}
                    for f, r, g, s, m in zip(files, table.row_ids[rows[result.suspects]].tolist(), y[result.suspects],
                                             result.suggested, result.scores, strict=True)]
        pairs = result.noise_rate_pairs(classes)
        finding = {"method": "confident_learning/prune_by_noise_rate", "features": f"pixels pooled to {self.config.label_noise_grid}x"
                   f"{self.config.label_noise_grid}" + (f"; cnn on images shrunk to <= {self.config.label_noise_cnn_size}px"
                                                         if self.config.label_noise_cnn else ""),
                   "members": members, "member_oof_accuracy": found.member_accuracy, "oof_accuracy": accuracy, "share": share,
                   "suspects": suspects, "noise_rates": pairs}
        named = self._named([f"{s['file']} ({s['given']} -> {s['suggested']}?)" for s in suspects])
        return CheckResult(check, share <= self.config.max_noise_share, self.severity(check),
                           f"{len(suspects)} likely mislabelled training images ({share:.1%}, {'+'.join(members)} out of fold, "
                           f"out-of-fold accuracy {accuracy:.2f})" + (f": {named}" if suspects else ""),
                           "label", f"<= {self.config.max_noise_share:.0%} suspects", round(share, 4),
                           {"suspects": suspects[: self.config.listed], "noise_rates": pairs[:10]}), finding

    def _sections(self, scans: dict[str, _Scan], splits: Splits) -> list[tuple[str, str]]:
        classes, k = splits.info.classes, splits.info.n_classes
        counts = [np.bincount(getattr(splits, n).labels, minlength=k) for n in SPLIT_NAMES]
        class_rows = [[c, *(int(x[i]) for x in counts)] for i, c in enumerate(classes)]
        sizes = Counter(f"{w}x{h}" for scan in scans.values() for w, h in scan.sizes).most_common(15)
        channel_rows = [[name, *(f"{m:.3f} ± {s:.3f}" for m, s in zip(*_channel_stats(scan), strict=True))]
                        for name, scan in scans.items() if scan.channel_means]
        channels = len(channel_rows[0]) - 1 if channel_rows else 0
        return [("Images per class", html_table(["class", *SPLIT_NAMES], class_rows)),
                ("Image sizes (width x height)", html_table(["size", "images"], sizes)),
                ("Channel mean ± std (at the input size, [0, 1] pixels)",
                 html_table(["split", *(f"channel {c}" for c in range(channels))], channel_rows))]


def _spread(values: np.ndarray) -> dict[str, float]:
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}


def _channel_stats(scan: _Scan) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over a split's pixels (each image weighs the same)."""
    mean = np.mean(scan.channel_means, axis=0)
    return mean, np.sqrt(np.maximum(np.mean(scan.channel_squares, axis=0) - mean**2, 0.0))
