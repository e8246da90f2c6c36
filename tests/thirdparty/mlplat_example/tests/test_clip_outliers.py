from pathlib import Path

import pytest
from mlplat.testing import check_plugin


@pytest.fixture(autouse=True)
def installed(mlplat_project):  # not needed once the project is pip-installed
    mlplat_project(Path(__file__).parents[1])


def test_honours_the_augmenter_contract():
    check_plugin("augmenter", "clip_outliers", {"quantile": 0.1})


def test_clips_each_feature_to_its_quantiles(mlplat_tiny_splits, mlplat_step_context):
    from mlplat_example import ClipConfig
    from mlplat_example.clip import ClipOutliers

    train = mlplat_tiny_splits.train
    out = ClipOutliers(ClipConfig(quantile=0.1)).augment(train, mlplat_step_context)
    assert (out.features.max() == train.features.quantile(0.9)).all()
    assert (out.features.min() == train.features.quantile(0.1)).all()
