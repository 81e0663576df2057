"""Metrics for Trainer: the main metric per problem type, `compute_metrics`, and the results table."""

import numpy as np

from .metrics import load_metric

# Main metric per problem type: (metric module, key, greater is better).
MAIN_METRICS = {
    "single_label_classification": ("posattn_classification", "accuracy", True),
    "regression": ("posattn_sentiment", "mae", False),
}
# Metric names (suffixes) where lower is better, besides Trainer's own `loss` rule.
LOWER_IS_BETTER = ("loss", "mae")


def main_metric(problem_type: str) -> tuple[str, str, bool]:
    """(metric module, main key, greater is better) for a problem type."""
    if problem_type not in MAIN_METRICS:
        raise ValueError(f"posattn-train handles {sorted(MAIN_METRICS)}, not {problem_type!r}.")
    return MAIN_METRICS[problem_type]


def build_compute_metrics(problem_type: str, metric_name: str | None = None):
    """`compute_metrics` for `Trainer`: logits (the first element when predictions are a tuple, as with
    `output_hidden_states`) -> class ids (argmax) or scores (flattened) -> the local evaluate module's numbers."""
    metric_name = metric_name or main_metric(problem_type)[0]
    metric = load_metric(metric_name, keep_in_memory=True)

    def compute_metrics(eval_prediction) -> dict[str, float]:
        predictions = eval_prediction.predictions
        if isinstance(predictions, (tuple, list)):
            predictions = predictions[0]
        predictions = np.asarray(predictions)
        references = np.asarray(eval_prediction.label_ids)
        if problem_type == "regression":
            predictions, references = predictions.reshape(-1), references.reshape(-1)
        else:
            predictions, references = predictions.argmax(-1), references.reshape(-1)
        return {key: float(value) for key, value in metric.compute(predictions=predictions, references=references).items()}

    return compute_metrics


def format_results_table(results: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per split, one column per metric (Trainer bookkeeping left out)."""
    skip = ("runtime", "samples_per_second", "steps_per_second", "epoch")
    columns: list[str] = []
    for metrics in results.values():
        for key in metrics:
            name = key.split("_", 1)[1] if "_" in key else key
            if name not in skip and name not in columns:
                columns.append(name)
    lines = ["| split | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for split, metrics in results.items():
        prefix = next(iter(metrics)).split("_", 1)[0] if metrics else ""
        cells = []
        for column in columns:
            value = metrics.get(f"{prefix}_{column}")
            cells.append("" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value)))
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["MAIN_METRICS", "main_metric", "build_compute_metrics", "format_results_table"]
