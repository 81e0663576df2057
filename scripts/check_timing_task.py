#!/usr/bin/env python
"""Is the NATOPS timing task (natops loader option `timing_task`) learnable from cross-modal timing? A non-deep check.

For every sample, the shifted modality (thumbs) is interpolated onto the reference modality's (hand tips) true
timestamps, and the mean correlation of their matching channels (left/right x, y, z) is measured at time lags
-k..+k steps. An aligned sample correlates best at lag 0; a shifted one at +-k. A logistic regression on these lag
correlations, fitted on the train split, is scored on test. It uses the streams' true timestamps, as a time-aligned
encoding can; it says nothing about what a transformer learns in 100 epochs.

    python scripts/check_timing_task.py            # the study's task: multi-rate parts, thumbs shifted 8 steps
"""

import argparse
import json

import numpy as np

from modeling_posattn.toolkit.data.natops import load_natops


def lag_correlations(row: dict, shifted: str, reference: str, max_lag: int, rate: float) -> np.ndarray:
    times = row["timestamps"]
    target = np.asarray(row[shifted])
    base = np.asarray(row[reference])
    base_times = np.asarray(times[reference])
    on_grid = np.stack([np.interp(base_times, times[shifted], channel) for channel in target.T], axis=1)
    features = []
    for lag in range(-max_lag, max_lag + 1):
        a = on_grid[max(lag, 0) : len(on_grid) + min(lag, 0)]
        b = base[max(-lag, 0) : len(base) + min(-lag, 0)]
        a, b = a - a.mean(0), b - b.mean(0)
        denominator = np.sqrt((a**2).sum(0) * (b**2).sum(0)) + 1e-9
        features.append(float(np.mean((a * b).sum(0) / denominator)))
    return np.array(features)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shift_steps", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from sklearn.linear_model import LogisticRegression

    bundle = load_natops(multirate=True, seed=args.seed, timing_task={"modality": "thumbs", "shift_steps": args.shift_steps})
    rate = bundle.options["sampling_rate"]
    features, labels = {}, {}
    for split in ("train", "test"):
        rows = bundle.dataset[split]
        features[split] = np.stack([lag_correlations(row, "thumbs", "hand_tips", args.shift_steps, rate) for row in rows])
        labels[split] = np.asarray(rows["labels"])
    model = LogisticRegression(max_iter=1000).fit(features["train"], labels["train"])
    accuracy = float((model.predict(features["test"]) == labels["test"]).mean())
    print(json.dumps({"task": bundle.options["timing_task"], "test_accuracy": round(accuracy, 4),
                      "train_accuracy": round(float(model.score(features["train"], labels["train"])), 4)}))


if __name__ == "__main__":
    main()
