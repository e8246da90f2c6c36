"""mlplat.images: the one decode path (size, channels, normalization, refusals) and the lazy loader."""

import io

import numpy as np
import pytest
from mlplat.images import BadImage, ImageFiles, decode, fit_preprocessing, loader
from mlplat.manifest import ImagePreprocessing
from PIL import Image

PREP = ImagePreprocessing(size=[16, 16], channels=3, mean=[0.5] * 3, std=[0.25] * 3)


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def test_decode_converts_resizes_and_normalizes():
    tensor = decode(png(np.full((20, 30), 255, np.uint8)), PREP)  # grayscale, another size
    assert tuple(tensor.shape) == (3, 16, 16)
    assert float(tensor.max()) == pytest.approx((1.0 - 0.5) / 0.25)


@pytest.mark.parametrize(("data", "limit", "reason"), [
    (b"not an image", None, "undecodable"),
    (png(np.zeros((300, 300, 3), np.uint8)), 1000, "too_large"),
    (png(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))[:2000], None, "truncated"),
])
def test_bad_images_are_refused_with_a_reason(data, limit, reason):
    prep = PREP if limit is None else PREP.model_copy(update={"max_pixels": limit})
    with pytest.raises(BadImage) as refused:
        decode(data, prep)
    assert refused.value.reason == reason


def test_fitted_statistics_and_lazy_loader(tmp_path):
    files = []
    for i in range(6):
        path = tmp_path / f"{i}.png"
        path.write_bytes(png(np.full((8, 8), i * 40, np.uint8)))
        files.append(str(path))
    prep = fit_preprocessing(files, size=[8, 8], channels=3)
    expected = np.mean([i * 40 / 255 for i in range(6)])
    assert prep.mean == pytest.approx([expected] * 3, abs=1e-6)
    images, labels = next(iter(loader(ImageFiles(files, np.arange(6), prep), batch_size=4)))
    assert tuple(images.shape) == (4, 3, 8, 8) and labels.tolist() == [0, 1, 2, 3]
    (tmp_path / "0.png").write_bytes(b"garbage")
    with pytest.raises(BadImage, match="0.png"):
        ImageFiles(files, None, prep)[0]
