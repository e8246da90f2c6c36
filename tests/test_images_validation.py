"""The `images` validator on a generated folder with a corrupt file, a truncated one, a duplicate, CMYK and
palette images: each finding names its files and gates by severity."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from mlplat.data import Splits
from mlplat.datasets.shapes import write_shapes
from mlplat.spec import parse_spec, resolve
from mlplat.steps import ingest, validate
from PIL import Image


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("damaged")
    files = write_shapes(root / "data", per_class=12, classes=("circle", "square", "ring"))
    by_name = {f.name: f for f in files}
    corrupt = by_name["circle-0000.png"]
    corrupt.write_bytes(b"this is not a png")
    truncated = by_name["circle-0001.png"]
    truncated.write_bytes(truncated.read_bytes()[:200])
    duplicate = root / "data" / "square" / "copy-of-ring.png"  # the same bytes, another label
    duplicate.write_bytes(by_name["ring-0002.png"].read_bytes())
    cmyk = root / "data" / "ring" / "cmyk.jpg"
    Image.fromarray(np.asarray(Image.open(by_name["ring-0003.png"]))).convert("CMYK").save(cmyk, "JPEG")
    palette = root / "data" / "square" / "palette.png"
    Image.open(by_name["square-0004.png"]).convert("P").save(palette)
    return root, {"corrupt": corrupt, "truncated": truncated, "duplicate": duplicate, "cmyk": cmyk, "palette": palette}


def run_validator(root: Path, params: dict) -> tuple[object, dict]:
    spec = resolve(parse_spec({"name": "damaged", "dataset": {"source": "data", "image": {}},
                               "steps": {"validate": {"plugin": "images", "params": params}, "train": {"plugin": "cnn"}}}))
    ingest(spec, root, root / "ingest")
    report = validate(spec, root / "ingest", root / "validate")
    return report, json.loads((root / "validate" / "report.json").read_text())


def test_findings_name_files_and_gate(damaged: tuple[Path, dict[str, Path]]) -> None:
    root, files = damaged
    report, stored = run_validator(root, {"min_images_per_class": 5})
    checks = {c["check"]: c for c in stored["checks"]}
    assert not report.passed
    blocking = {c.check for c in report.blocking}
    assert {"images.undecodable", "images.truncated", "images.duplicate_labels"} <= blocking
    assert str(files["corrupt"]) in checks["images.undecodable"]["message"]
    assert str(files["truncated"]) in checks["images.truncated"]["message"]
    assert [f["file"] for f in checks["images.truncated"]["details"]["files"]] == [str(files["truncated"])]
    mode = checks["images.mode"]
    assert not mode["passed"] and mode["severity"] == "warn"
    assert {f["file"]: f["mode"] for f in mode["details"]["files"]} == {str(files["cmyk"]): "CMYK", str(files["palette"]): "P"}
    group = checks["images.duplicate_labels"]["details"]["groups"][0]
    assert {g["label"] for g in group} == {"ring", "square"} and str(files["duplicate"]) in {g["file"] for g in group}
    assert checks["images.class_counts"]["passed"]
    assert checks["images.class_counts"]["observed"]["train"].keys() == {"circle", "ring", "square"}
    assert checks["images.sizes"]["observed"]["most_common"] == {"32x32": 37}  # 36 + 3 added, less the 2 unusable
    assert len(checks["images.channels"]["observed"]["train"]["mean"]) == 3
    assert sorted(stored["findings"]["images"]["bad_files"]) == sorted([str(files["corrupt"]), str(files["truncated"])])
    assert "Images per class" in (root / "validate" / "report.html").read_text()


def test_severities_are_configurable(damaged: tuple[Path, dict[str, Path]]) -> None:
    root, _ = damaged
    severity = {"images.undecodable": "warn", "images.truncated": "info", "images.duplicate_labels": "warn",
                "images.leakage": "warn", "images.mode": "fail"}
    report, _ = run_validator(root, {"severity": severity, "min_images_per_class": 50})
    assert {c.check for c in report.blocking} == {"images.mode"}
    assert "images.class_counts" in {c.check for c in report.warnings}  # 50 per class is more than there are


def test_clean_folder_passes_and_unknown_checks_are_refused(tmp_path: Path) -> None:
    write_shapes(tmp_path / "data", per_class=12, classes=("circle", "square"))
    report, stored = run_validator(tmp_path, {"min_images_per_class": 5})
    assert report.passed and all(c["passed"] for c in stored["checks"]), [c for c in stored["checks"] if not c["passed"]]
    from mlplat.errors import SpecError

    with pytest.raises(SpecError, match="unknown checks"):
        run_validator(tmp_path, {"severity": {"images.colour": "fail"}})


def test_a_shifted_split_fires_the_channel_check(tmp_path: Path) -> None:
    files = write_shapes(tmp_path / "data", per_class=30, classes=("circle", "square"))
    report, stored = run_validator(tmp_path, {"min_images_per_class": 5})
    assert report.passed
    from mlplat.data import Splits

    test_files = set(Splits.load(tmp_path / "ingest").test.features["image"])
    for f in files:  # darken the test split's images only
        if str(f) in test_files:
            Image.fromarray((np.asarray(Image.open(f)) * 0.3).astype(np.uint8)).save(f)
    validate_report = validate(resolve(parse_spec({"name": "damaged", "dataset": {"source": "data", "image": {}},
                                                   "steps": {"validate": {"plugin": "images"}, "train": {"plugin": "cnn"}}})),
                               tmp_path / "ingest", tmp_path / "again")
    channels = next(c for c in validate_report.checks if c.check == "images.channels")
    assert not channels.passed and "test channel" in channels.message and "validation" not in channels.message


def test_images_validator_needs_an_image_dataset() -> None:
    from mlplat.errors import SpecError

    with pytest.raises(SpecError, match="needs an image-file dataset"):
        resolve(parse_spec({"name": "tab", "dataset": {"source": "sklearn:iris"},
                            "steps": {"validate": {"plugin": "images"}, "train": {"plugin": "mlp"}}}))


def test_bytes_decoder_sanity() -> None:  # the truncated fixture really is truncated for PIL
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8) + 7).save(buffer, "PNG")
    assert Image.open(io.BytesIO(buffer.getvalue())).size == (32, 32)


def test_label_noise_names_misplaced_images_and_abstains_on_pixel_blind_classes(tmp_path: Path) -> None:
    """Colour classes (pooled pixels tell them apart): images misplaced into another class's folder are the
    suspects. Shapes that differ only in outline (pooled pixels cannot): not assessed, nothing flagged."""
    rng = np.random.default_rng(0)
    colours = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}
    misplaced = set()
    for name, colour in colours.items():
        for i in range(40):
            target = name
            if i < 3:  # three of each colour filed under the next colour
                target = list(colours)[(list(colours).index(name) + 1) % 3]
            folder = tmp_path / "colours" / "data" / target
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.clip(np.array(colour) + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
            path = folder / f"{name}-{i:03d}.png"
            Image.fromarray(pixels).save(path)
            if i < 3:
                misplaced.add(path.name)
    _, stored = run_validator(tmp_path / "colours", {"min_images_per_class": 5})
    noise = {c["check"]: c for c in stored["checks"]}["images.label_noise"]
    suspects = {Path(s["file"]).name for s in stored["findings"]["label_noise"]["suspects"]}
    # every suspect is a misplaced image, and most of the 9 are found (about 70 % of them land in training)
    assert suspects <= misplaced and len(suspects) >= 4, (suspects, misplaced)
    assert noise["severity"] == "warn" and stored["findings"]["label_noise"]["noise_rates"][0]["rate"] > 0

    write_shapes(tmp_path / "shapes" / "data", per_class=25)  # 10 shapes and textures at random places and sizes
    _, stored = run_validator(tmp_path / "shapes", {"min_images_per_class": 5, "label_noise_cnn": False})
    noise = {c["check"]: c for c in stored["checks"]}["images.label_noise"]
    assert noise["passed"] and "not assessed" in noise["message"] and "label_noise" not in stored["findings"]


def test_label_noise_cnn_member_names_misplaced_shapes(tmp_path: Path) -> None:
    """Filled squares, square outlines and plus signs at random places and sizes: the CNN member tells them apart
    better than the pooled-pixel models, and the suspects are the images filed under another shape."""
    rng = np.random.default_rng(0)
    classes, misplaced = ("filled", "outline", "plus"), set()
    for k, name in enumerate(classes):
        for i in range(100):
            size = int(rng.integers(8, 15))
            patch = np.zeros((size, size))
            if k == 0:
                patch[:] = 1
            elif k == 1:
                patch[[0, 1, -2, -1], :] = patch[:, [0, 1, -2, -1]] = 1
            else:
                patch[size // 2 - 1:size // 2 + 1, :] = patch[:, size // 2 - 1:size // 2 + 1] = 1
            pixels = rng.normal(40, 20, (32, 32))
            r, c = rng.integers(0, 32 - size, 2)
            pixels[r:r + size, c:c + size] += 150 * patch
            target = classes[(k + 1) % 3] if i < 6 else name  # six of each shape filed under the next one
            folder = tmp_path / "data" / target
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB").save(folder / f"{name}-{i:03d}.png")
            if i < 6:
                misplaced.add(f"{name}-{i:03d}.png")
    _, stored = run_validator(tmp_path, {"min_images_per_class": 5})
    noise = {c["check"]: c for c in stored["checks"]}["images.label_noise"]
    finding = stored["findings"].get("label_noise")
    assert finding, noise["message"]
    in_train = {Path(f).name for f in Splits.load(tmp_path / "ingest").train.features["image"]} & misplaced
    suspects = {Path(s["file"]).name for s in finding["suspects"]}
    assert "cnn" in finding["members"] and finding["member_oof_accuracy"]["cnn"] > finding["member_oof_accuracy"]["forest"]
    hits = len(suspects & misplaced)
    assert hits >= 0.7 * len(in_train) and hits >= 0.7 * len(suspects), (suspects, in_train)
    assert noise["severity"] == "warn" and {"given", "true", "rate"} <= set(finding["noise_rates"][0])
