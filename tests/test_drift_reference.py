"""The drift reference is held-out rows (issue 17): the output-drift test compares the served probabilities
with the model's probabilities on validation rows, which it never fitted, not on its training rows."""

from __future__ import annotations

import numpy as np
from mlplat.contracts.drift_detector import PREDICTION_COLUMN, probability_columns
from mlplat.data import Splits
from mlplat.modeldir import LoadedModel


def _sorted_rows(X: np.ndarray) -> np.ndarray:
    return np.lexsort(X.T[::-1])


def test_reference_holds_the_validation_rows_and_their_probabilities(trained_run) -> None:
    splits = Splits.load(trained_run.run.dir / "steps" / "ingest")
    loaded = LoadedModel.load(trained_run.model_dir)
    reference = loaded.reference()
    validation = loaded.encode(splits.validation.features[loaded.feature_names]).astype(np.float64)
    training = loaded.encode(splits.train.features[loaded.feature_names]).astype(np.float64)
    rows = reference[loaded.feature_names].to_numpy(np.float64)
    assert len(rows) == len(validation)  # the whole validation split (it is under REFERENCE_ROWS)
    order, held_order = _sorted_rows(rows), _sorted_rows(validation)
    np.testing.assert_allclose(rows[order], validation[held_order], rtol=1e-6)
    assert not {tuple(r) for r in np.round(rows, 5)} & {tuple(r) for r in np.round(training, 5)}  # no training row

    expected = loaded.predict_proba(validation[held_order])
    columns = probability_columns(len(loaded.class_names))
    np.testing.assert_allclose(reference[columns].to_numpy()[order], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(reference[PREDICTION_COLUMN].to_numpy()[order], expected.argmax(1))
