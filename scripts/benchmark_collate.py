#!/usr/bin/env python
"""Data-path cost of one Trainer batch, interleaved in one process (issue 13, item 5): fetching 32 packed rows from the
encoded dataset and padding them with `processor.pad` (what `DataCollatorWithPadding(processor)` calls), for rows as
the processor's map used to leave them (nested Python lists) against `encode_splits`' numpy-formatted `Array2D` rows.
One modality of 64 features, 270 tokens a row (issue 13's profile). Run from the repository root:
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python scripts/benchmark_collate.py
"""

import time

import datasets
import numpy as np

from modeling_posattn import PosAttnProcessor
from modeling_posattn.toolkit.builders import encode_splits

BATCH, ROWS, TOKENS, FEATURES, REPEATS = 32, 256, 270, 64, 7


def main():
    datasets.disable_progress_bars()
    rng = np.random.default_rng(0)
    lengths = rng.integers(TOKENS // 2, TOKENS * 3 // 2, ROWS)  # ragged, mean ~TOKENS
    split = datasets.Dataset.from_dict(
        {"sensor": [rng.normal(size=(n, FEATURES)).tolist() for n in lengths], "labels": [0] * ROWS}
    )
    processor = PosAttnProcessor(modalities={"sensor": {"input_dim": FEATURES, "sampling_rate": 100.0}})
    variants = {
        "nested lists (before)": split.map(processor, batched=True, fn_kwargs={"padding": False}, remove_columns=["sensor"]),
        "numpy Array2D (encode_splits)": encode_splits({"train": split}, processor)["train"],
    }
    times = {name: [] for name in variants}
    for _ in range(REPEATS):
        for name, dataset in variants.items():  # interleaved: machine load drifts alike for both
            start = time.perf_counter()
            for first in range(0, ROWS, BATCH):
                processor.pad(dataset.__getitems__(list(range(first, first + BATCH))))
            times[name].append(1000 * (time.perf_counter() - start) / (ROWS // BATCH))
    for name, values in times.items():
        print(f"{name}: {np.median(values):.1f} ms per batch of {BATCH} (min {min(values):.1f}, max {max(values):.1f})")
    ratios = [a / b for a, b in zip(*times.values())]
    print(f"ratio: {np.median(ratios):.1f}x (min {min(ratios):.1f}, max {max(ratios):.1f})")


if __name__ == "__main__":
    main()
