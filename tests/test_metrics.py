"""Scoring helpers (used by evaluation code only; fitting never reads labels)."""

import numpy as np
import pandas as pd
import pytest

from scsiam import metrics


def test_scores_ignore_cluster_names_and_match_by_hand():
    labels = np.array(["a", "a", "b", "b", "c", "c"])
    assert metrics.evaluate(labels, [2, 2, 0, 0, 1, 1]) == {"ARI": 1.0, "NMI": 1.0, "ACC": 1.0}
    # best one-to-one matching a-0, b-1, c-2: the sixth cell (class c, cluster 0) is the only miss
    assert metrics.accuracy(labels, [0, 0, 1, 1, 2, 0]) == pytest.approx(5 / 6)


def test_cells_without_a_reference_label_are_left_out_with_a_warning():
    labels = pd.Categorical(["a", "a", None, "b", "b", np.nan, "c", "c"])
    pred = np.array([0, 0, 5, 1, 1, 5, 2, 2])
    with pytest.warns(UserWarning, match="2 of 8 cells have no reference label"):
        scores = metrics.evaluate(labels, pred)
    assert scores == {"ARI": 1.0, "NMI": 1.0, "ACC": 1.0}  # "nan" is not scored as a class
    with pytest.warns(UserWarning, match="left out"):
        assert metrics.ari(pd.Series(labels), pred) == 1.0


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="one entry per cell, got 3 and 2"):
        metrics.evaluate(["a", "b", "c"], [0, 1])
    with pytest.raises(ValueError, match="Every reference label is missing"):
        metrics.evaluate([None, np.nan], [0, 1])
