"""The processor's input checks (`input_checks_posattn.py`), called directly: each bad value is refused with an error
that names where it is and what is wrong; good values come back as the arrays the processor packs."""

import numpy as np
import pytest

from modeling_posattn.configuration_posattn import MAX_FEATURE_MAGNITUDE
from modeling_posattn.input_checks_posattn import check_rows, checked_features, checked_times, checked_token_ids

FEATURES = {"input_dim": 3}
TOKENS = {"vocab_size": 10}
WHERE = "sample 4, modality 'audio'"


def test_good_values_come_back_as_float64_int64_and_float64_arrays():
    features = checked_features([[1, 2, 3], [4, 5, 6]], FEATURES, WHERE)
    ids = checked_token_ids([0, 9, 3], TOKENS, WHERE)
    times = checked_times([0.0, 0.5, 0.5], 3, WHERE)
    assert features.dtype == np.float64 and features.shape == (2, 3)
    assert ids.dtype == np.int64 and ids.tolist() == [0, 9, 3]
    assert times.dtype == np.float64 and times.tolist() == [0.0, 0.5, 0.5]
    assert checked_features([], FEATURES, WHERE).shape == (0, 3)
    assert checked_token_ids([], TOKENS, WHERE).shape == (0,)
    flags = checked_features(np.ones((2, 3), dtype=bool), FEATURES, WHERE)  # booleans are numbers (0/1 features)
    assert flags.dtype == np.float64 and flags.sum() == 6


@pytest.mark.parametrize(
    "value, message",
    [
        ([[1, 2, 3], [4, 5]], "frames differ in length"),
        ([["a", "b", "c"]], "real numeric"),
        ([[1j, 0, 0]], "real numeric"),
        ([[1, 2]], r"must have shape \(T, 3\), got \(1, 2\)"),
        ([[0, 0, 0], [0, np.nan, 0]], "NaN or Inf \\(first at frame 1\\)"),
        ([[0, 0, 0], [0, 0, 0], [np.inf, 0, 0]], "NaN or Inf \\(first at frame 2\\)"),
        ([[0, 0, 2 * MAX_FEATURE_MAGNITUDE]], "exceed .* in magnitude \\(first at frame 0\\)"),
    ],
)
def test_bad_features_are_refused_naming_the_sample_and_the_problem(value, message):
    with pytest.raises(ValueError, match=f"^{WHERE}: .*{message}"):
        checked_features(value, FEATURES, WHERE)


def test_non_finite_features_pass_only_when_asked_for():
    assert np.isnan(checked_features([[np.nan, 0, 0]], FEATURES, WHERE, finite=False)).any()


@pytest.mark.parametrize(
    "value, message",
    [([[1, 2]], "1-D sequence"), ([1.5, 2.0], "integers"), ([3, 10], r"\[0, 10\), got 3..10"), ([-1], "got -1..-1")],
)
def test_bad_token_ids_are_refused(value, message):
    with pytest.raises(ValueError, match=f"^{WHERE}: .*{message}"):
        checked_token_ids(value, TOKENS, WHERE)


@pytest.mark.parametrize(
    "value, message",
    [
        ([0.0, 1.0], "has shape \\(2,\\) but the modality has 3 tokens"),
        ([[0.0], [1.0], [2.0]], "has shape \\(3, 1\\) but the modality has 3 tokens"),
        ([0.0, np.nan, 1.0], "NaN or Inf"),
        ([-0.5, 0.0, 1.0], ">= 0 seconds"),
        ([0.0, 2.0, 1.0], "position 2 goes back in time"),
    ],
)
def test_bad_timestamps_are_refused(value, message):
    with pytest.raises(ValueError, match=f"^{WHERE}: .*{message}"):
        checked_times(value, 3, WHERE)


def row(length=2, width=3, **extra):
    return {"input_values": np.zeros((length, width)), "modality_ids": np.zeros(length, dtype=np.int64), **extra}


@pytest.mark.parametrize(
    "rows, error, message",
    [
        ([], ValueError, "empty list"),
        ([row(), [1, 2]], ValueError, "Row 1: expected a packed row"),
        ([row(), {"input_values": np.zeros((2, 3))}], ValueError, "Row 1: expected a packed row"),
        ([row(position_ids=np.zeros((2, 1)))], ValueError, "Row 0: `position_ids` has shape \\(2, 1\\), expected \\(2,\\)"),
        ([row(), row(position_ids=np.arange(2))], ValueError, "Row 1 has keys .* but row 0 has"),
        ([row(position_ids=np.arange(3))], ValueError, "Row 0: `position_ids` has shape \\(3,\\), expected \\(2,\\)"),
        ([row(), row(width=4)], ValueError, "Row 1: `input_values` has shape \\(2, 4\\), expected \\(2, 3\\)"),
        ([row(labels="cat")], TypeError, "Row 0: `labels` must be numbers"),
        ([row(labels=[0, 1]), row(labels=[1])], ValueError, "Row 1: `labels` has shape \\(1,\\) but row 0's has \\(2,\\)"),
    ],
)
def test_rows_of_one_batch_must_agree(rows, error, message):
    with pytest.raises(error, match=message):
        check_rows(rows, feature_dim=3)


def test_agreeing_rows_pass_including_flat_features():
    check_rows([row(labels=1), {**row(length=3, labels=0), "input_values": np.zeros(9)}], feature_dim=3)
    check_rows([row(labels=True), row(labels=False)], feature_dim=3)  # 0/1 targets as booleans
