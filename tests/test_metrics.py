"""The project's local `evaluate` modules against scikit-learn / scipy on the same arrays (offline)."""

import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import evaluate  # noqa: E402

from modeling_posattn.toolkit.metrics import METRIC_NAMES, load_metric, metric_path  # noqa: E402

METRICS_DIR = Path(__file__).resolve().parents[1] / "modeling_posattn" / "toolkit" / "metrics"


@pytest.fixture(scope="module")
def classification():
    return load_metric("posattn_classification", keep_in_memory=True)


@pytest.fixture(scope="module")
def sentiment():
    return load_metric("posattn_sentiment", keep_in_memory=True)


def mult_reference(predictions, truths, exclude_zero=True):
    """MulT's `eval_mosei_senti` (src/eval_metrics.py, yaohungt/Multimodal-Transformer @029afeb) with the same
    library calls, returning its numbers instead of printing them (argument order of f1_score kept as in MulT)."""
    non_zeros = np.array([i for i, e in enumerate(truths) if e != 0 or (not exclude_zero)])
    preds_a7, truth_a7 = np.clip(predictions, -3.0, 3.0), np.clip(truths, -3.0, 3.0)
    preds_a5, truth_a5 = np.clip(predictions, -2.0, 2.0), np.clip(truths, -2.0, 2.0)
    return {
        "mae": np.mean(np.absolute(predictions - truths)),
        "corr": np.corrcoef(predictions, truths)[0][1],
        "acc_7": np.sum(np.round(preds_a7) == np.round(truth_a7)) / float(len(truth_a7)),
        "acc_5": np.sum(np.round(preds_a5) == np.round(truth_a5)) / float(len(truth_a5)),
        "f1_mult_order": f1_score(predictions[non_zeros] > 0, truths[non_zeros] > 0, average="weighted"),
        "acc_2": accuracy_score(truths[non_zeros] > 0, predictions[non_zeros] > 0),
    }


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_loads_offline_by_folder_file_and_helper(name):
    folder = METRICS_DIR / name
    assert metric_path(name) == str(folder)
    for path in (folder, folder / f"{name}.py"):
        module = evaluate.load(str(path))
        assert isinstance(module, evaluate.Metric)
    with pytest.raises(ValueError, match="Unknown posattn metric"):
        metric_path("accuracy")


@pytest.mark.parametrize("seed", range(6))
def test_classification_matches_sklearn(classification, seed):
    rng = np.random.default_rng(seed)
    num_labels = int(rng.integers(2, 8))
    size = int(rng.integers(1, 200))
    references = rng.integers(0, num_labels, size)
    # Mostly right, sometimes wrong, sometimes a label that never occurs in the references.
    predictions = np.where(rng.random(size) < 0.6, references, rng.integers(0, num_labels + 1, size))
    result = classification.compute(predictions=predictions, references=references)
    assert math.isclose(result["accuracy"], accuracy_score(references, predictions), rel_tol=1e-12, abs_tol=1e-12)
    expected = f1_score(references, predictions, average="macro", zero_division=0)
    assert math.isclose(result["macro_f1"], expected, rel_tol=1e-12, abs_tol=1e-12)
    labels = list(range(num_labels + 2))  # includes labels absent from both arrays
    with_labels = classification.compute(predictions=predictions, references=references, labels=labels)
    expected = f1_score(references, predictions, average="macro", labels=labels, zero_division=0)
    assert math.isclose(with_labels["macro_f1"], expected, rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize(
    "predictions, references",
    [
        ([0, 1, 2, 2], [0, 1, 1, 2]),  # the docstring example
        ([3], [3]),  # one sample, right
        ([1], [0]),  # one sample, wrong
        ([0, 0, 0, 0], [0, 0, 0, 0]),  # one class only
        ([1, 1, 1, 1], [0, 0, 0, 0]),  # all wrong
        ([2, 0, 1], [0, 1, 2]),  # a permutation: accuracy 0, every label present
    ],
)
def test_classification_edge_cases(classification, predictions, references):
    result = classification.compute(predictions=predictions, references=references)
    assert math.isclose(result["accuracy"], accuracy_score(references, predictions))
    assert math.isclose(result["macro_f1"], f1_score(references, predictions, average="macro", zero_division=0))


def test_classification_refuses_empty(classification):
    with pytest.raises(ValueError, match="at least one"):
        classification.compute(predictions=[], references=[])


@pytest.mark.parametrize("seed", range(6))
def test_sentiment_matches_sklearn_scipy_and_mult(sentiment, seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(5, 300))
    # MOSI-like truths: averages of annotator scores in [-3, 3], many exact zeros and halves (rounding ties).
    truths = np.round(rng.uniform(-3.4, 3.4, size) * 3) / 3
    truths[rng.random(size) < 0.15] = 0.0
    truths[rng.random(size) < 0.1] = rng.choice([-2.5, -0.5, 0.5, 1.5, 2.5])
    predictions = truths + rng.normal(0, 1.0, size)
    predictions[rng.random(size) < 0.05] = 0.0  # exact-zero predictions: MulT's `> 0` counts them negative
    result = sentiment.compute(predictions=predictions, references=truths)

    assert math.isclose(result["mae"], np.mean(np.abs(predictions - truths)), rel_tol=1e-12)
    assert math.isclose(result["corr"], stats.pearsonr(predictions, truths).statistic, rel_tol=1e-9)
    non_zero = truths != 0
    binary_truth, binary_pred = truths[non_zero] > 0, predictions[non_zero] > 0
    assert math.isclose(result["acc_2"], accuracy_score(binary_truth, binary_pred), rel_tol=1e-12)
    assert math.isclose(result["f1"], f1_score(binary_truth, binary_pred, average="weighted"), rel_tol=1e-12)
    acc_7 = accuracy_score(np.round(np.clip(truths, -3, 3)).astype(int), np.round(np.clip(predictions, -3, 3)).astype(int))
    assert math.isclose(result["acc_7"], acc_7, rel_tol=1e-12)

    mult = mult_reference(predictions, truths)
    for key in ("mae", "corr", "acc_2", "acc_5", "acc_7"):
        assert math.isclose(result[key], mult[key], rel_tol=1e-9), key
    mult_order = sentiment.compute(predictions=predictions, references=truths, f1_mult_argument_order=True)
    assert math.isclose(mult_order["f1"], mult["f1_mult_order"], rel_tol=1e-12)

    everything = sentiment.compute(predictions=predictions, references=truths, exclude_zero=False)
    assert math.isclose(everything["acc_2"], accuracy_score(truths > 0, predictions > 0), rel_tol=1e-12)
    assert math.isclose(everything["f1"], f1_score(truths > 0, predictions > 0, average="weighted"), rel_tol=1e-12)
    mult_all = mult_reference(predictions, truths, exclude_zero=False)
    assert math.isclose(everything["acc_2"], mult_all["acc_2"], rel_tol=1e-12)


def test_sentiment_edge_cases(sentiment):
    # Perfect predictions.
    truths = np.array([-3.0, -1.0, 0.0, 0.5, 2.0, 3.0])
    perfect = sentiment.compute(predictions=truths, references=truths)
    assert perfect["mae"] == 0.0 and math.isclose(perfect["corr"], 1.0)
    assert perfect["acc_2"] == perfect["f1"] == perfect["acc_7"] == perfect["acc_5"] == 1.0
    # Clipping: predictions far outside [-3, 3] round to the edge classes.
    clipped = sentiment.compute(predictions=[10.0, -10.0], references=[3.0, -3.0])
    assert clipped["acc_7"] == 1.0 and clipped["acc_2"] == 1.0
    # Every truth is 0: the non-zero subset is empty, acc_2 and f1 are undefined (NaN), the rest is not.
    zeros = sentiment.compute(predictions=[0.3, -0.2, 0.0], references=[0.0, 0.0, 0.0])
    assert math.isnan(zeros["acc_2"]) and math.isnan(zeros["f1"])
    assert math.isclose(zeros["mae"], 0.5 / 3) and math.isclose(zeros["acc_7"], 1.0)
    # Constant predictions: the correlation is undefined, as with numpy and scipy.
    constant = sentiment.compute(predictions=[1.0, 1.0, 1.0], references=[-1.0, 0.5, 2.0])
    assert math.isnan(constant["corr"])
    with pytest.warns(stats.ConstantInputWarning):
        assert math.isnan(stats.pearsonr([1.0, 1.0, 1.0], [-1.0, 0.5, 2.0]).statistic)
    # A prediction of exactly 0 counts as negative (MulT thresholds with `> 0`).
    assert sentiment.compute(predictions=[0.0], references=[1.0])["acc_2"] == 0.0
    assert sentiment.compute(predictions=[0.0], references=[-1.0])["acc_2"] == 1.0
    # One class only on the subset: weighted F1 as scikit-learn.
    one_class = sentiment.compute(predictions=[1.0, -1.0, 2.0], references=[1.0, 2.0, 0.5])
    assert math.isclose(one_class["f1"], f1_score([True] * 3, [True, False, True], average="weighted"))
    with pytest.raises(ValueError, match="at least one"):
        sentiment.compute(predictions=[], references=[])
