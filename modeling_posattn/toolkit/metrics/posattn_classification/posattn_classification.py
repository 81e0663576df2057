"""posattn_classification: accuracy and macro-F1 for single-label classification, as a local `evaluate` module.

Load it offline with `evaluate.load("<path>/posattn_classification")` (or `modeling_posattn.metrics.load_metric(
"posattn_classification")`). Plain numpy, so that it needs nothing beyond the package's own dependencies; the tests
check every number against scikit-learn.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Accuracy and macro-averaged F1 of integer class predictions.

- accuracy = mean(prediction == reference).
- macro_f1 = unweighted mean over labels of F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c). The labels are those that occur in
  the references or the predictions (scikit-learn's default), or the `labels` argument when given; a label with no
  true and no predicted sample scores 0 (scikit-learn's `zero_division` default).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class indices (argmax of the logits).
    references (`list[int]`): true class indices.
    labels (`list[int]`, *optional*): the labels to average F1 over, e.g. `range(num_labels)`.
Returns:
    accuracy (`float`), macro_f1 (`float`).
Example:
    >>> metric = evaluate.load("modeling_posattn/metrics/posattn_classification")
    >>> metric.compute(predictions=[0, 1, 2, 2], references=[0, 1, 1, 2])
    {'accuracy': 0.75, 'macro_f1': 0.7777777777777777}
"""

_CITATION = ""


def macro_f1(predictions: np.ndarray, references: np.ndarray, labels=None) -> float:
    labels = np.union1d(references, predictions) if labels is None else np.asarray(list(labels))
    scores = []
    for label in labels:
        true_positive = np.sum((predictions == label) & (references == label))
        false_positive = np.sum((predictions == label) & (references != label))
        false_negative = np.sum((predictions != label) & (references == label))
        denominator = 2 * true_positive + false_positive + false_negative
        scores.append(2 * true_positive / denominator if denominator else 0.0)
    return float(np.mean(scores)) if scores else 0.0


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PosattnClassification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, labels=None):
        predictions, references = np.asarray(predictions, dtype=np.int64), np.asarray(references, dtype=np.int64)
        if len(references) == 0:
            raise ValueError("posattn_classification needs at least one prediction.")
        return {
            "accuracy": float(np.mean(predictions == references)),
            "macro_f1": macro_f1(predictions, references, labels),
        }
