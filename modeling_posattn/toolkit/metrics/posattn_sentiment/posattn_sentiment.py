"""posattn_sentiment: MulT's sentiment-regression metrics (CMU-MOSI / MOSEI), as a local `evaluate` module.

Follows `eval_mosei_senti` in MulT's `src/eval_metrics.py` (Tsai et al., 2019; github.com/yaohungt/Multimodal-Transformer,
commit 029afeb), which `src/train.py` calls as `eval_mosi(results, truths, True)`, i.e. with `exclude_zero=True`:

- `mae`: mean |prediction - truth| over all samples;
- `corr`: Pearson correlation over all samples (`np.corrcoef`; NaN when either side is constant);
- `acc_7` / `acc_5`: `np.round` of predictions and truths clipped to [-3, 3] / [-2, 2], equal, over all samples
  (numpy rounds halves to even, as in MulT);
- `acc_2`: binary accuracy of `prediction > 0` against `truth > 0` over the samples whose truth is not 0 (all
  samples with `exclude_zero=False`). MulT thresholds with `> 0`, so a prediction of exactly 0 counts as negative;
  on the non-zero subset `truth > 0` and `truth >= 0` agree;
- `f1`: weighted F1 of the same binary labels on the same subset. MulT's code passes its arguments in the order
  `f1_score(preds > 0, truths > 0, average="weighted")`, so its weights are the *predicted* class counts; this module
  uses scikit-learn's order (weights = true class counts) unless `f1_mult_argument_order=True`, which reproduces
  MulT's number exactly.

`acc_2` and `f1` are NaN when the subset is empty (every truth is 0). Plain numpy; tests compare with scikit-learn
and scipy.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = __doc__

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[float]`): predicted sentiment scores (MOSI: -3..3).
    references (`list[float]`): true sentiment scores.
    exclude_zero (`bool`, default True): compute acc_2 and f1 over samples with a non-zero truth (MulT's call).
    f1_mult_argument_order (`bool`, default False): weight F1 by predicted class counts as MulT's code does.
Returns:
    mae, corr, acc_2, f1, acc_5, acc_7 (`float`s).
"""

_CITATION = """@inproceedings{tsai2019multimodal,
  title={Multimodal Transformer for Unaligned Multimodal Language Sequences},
  author={Tsai, Yao-Hung Hubert and Bai, Shaojie and Liang, Paul Pu and Kolter, J. Zico and Morency, Louis-Philippe and Salakhutdinov, Ruslan},
  booktitle={ACL}, year={2019}
}"""


def weighted_binary_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """scikit-learn's `f1_score(y_true, y_pred, average="weighted")` for boolean labels."""
    labels = np.union1d(y_true, y_pred)
    scores, weights = [], []
    for label in labels:
        true_positive = np.sum((y_pred == label) & (y_true == label))
        denominator = 2 * true_positive + np.sum((y_pred == label) & (y_true != label)) + np.sum((y_pred != label) & (y_true == label))
        scores.append(2 * true_positive / denominator if denominator else 0.0)
        weights.append(np.sum(y_true == label))
    total = float(np.sum(weights))
    return float(np.dot(scores, weights) / total) if total else 0.0


def multiclass_acc(predictions: np.ndarray, references: np.ndarray) -> float:
    return float(np.mean(np.round(predictions) == np.round(references)))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PosattnSentiment(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}),
        )

    def _compute(self, predictions, references, exclude_zero=True, f1_mult_argument_order=False):
        predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
        references = np.asarray(references, dtype=np.float64).reshape(-1)
        if len(references) == 0:
            raise ValueError("posattn_sentiment needs at least one prediction.")
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = float(np.corrcoef(predictions, references)[0, 1]) if len(references) > 1 else float("nan")
        subset = references != 0 if exclude_zero else np.ones(len(references), dtype=bool)
        binary_pred, binary_true = predictions[subset] > 0, references[subset] > 0
        if subset.any():
            acc_2 = float(np.mean(binary_pred == binary_true))
            f1 = weighted_binary_f1(binary_pred, binary_true) if f1_mult_argument_order else weighted_binary_f1(binary_true, binary_pred)
        else:
            acc_2 = f1 = float("nan")
        return {
            "mae": float(np.mean(np.abs(predictions - references))),
            "corr": corr,
            "acc_2": acc_2,
            "f1": f1,
            "acc_5": multiclass_acc(np.clip(predictions, -2.0, 2.0), np.clip(references, -2.0, 2.0)),
            "acc_7": multiclass_acc(np.clip(predictions, -3.0, 3.0), np.clip(references, -3.0, 3.0)),
        }
