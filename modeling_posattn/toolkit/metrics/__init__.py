"""The project's metrics as local `evaluate` modules, loadable offline.

- `posattn_classification`: accuracy and macro-F1;
- `posattn_sentiment`: MulT's sentiment-regression metrics (MAE, Pearson correlation, Acc-2 and weighted F1 over
  non-zero truths, Acc-5, Acc-7).

`evaluate.load("modeling_posattn/metrics/posattn_classification")` works from the repository root; `load_metric(name)`
works from anywhere (it resolves the folder inside the installed package).
"""

import os

METRICS_DIR = os.path.dirname(os.path.abspath(__file__))
METRIC_NAMES = ("posattn_classification", "posattn_sentiment")


def metric_path(name: str) -> str:
    """The folder of a bundled metric (holding `<name>.py`), for `evaluate.load`."""
    if name not in METRIC_NAMES:
        raise ValueError(f"Unknown posattn metric {name!r}; choose one of {METRIC_NAMES}.")
    return os.path.join(METRICS_DIR, name)


def load_metric(name: str, **kwargs):
    """`evaluate.load` of a bundled metric by name: no Hub access."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)


__all__ = ["METRIC_NAMES", "metric_path", "load_metric"]
