#!/usr/bin/env python
"""What dropping the key mask of an unpadded batch gains (issue 13): the same model and batch (small preset, 8 x 512
tokens, nothing padded), once as it runs now (no mask reaches the layers) and once with the all-true mask forced back,
training step and inference, interleaved in one process, median [min-max] of the per-round ratio.

    PYTHONPATH=$PWD python scripts/benchmark_unpadded_mask.py --rounds 30
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from benchmark_speed import ONE_MODALITY, posattn_case, step_fn  # noqa: E402


def with_mask_forced(model):
    """The model as it ran before: the key mask kept whenever an `attention_mask` was passed."""
    forced = type(model)(model.config)
    forced.load_state_dict(model.state_dict())
    original = forced.key_padding_mask
    forced.key_padding_mask = lambda hidden_states, mask, padded: original(hidden_states, mask, True)
    return forced


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    small = json.loads((ROOT / "configuration" / "posattn-small.json").read_text())
    small = {key: small[key] for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")}
    model, inputs = posattn_case(ONE_MODALITY, 512, 8, **small)
    assert bool(inputs["attention_mask"].all())
    for train in (True, False):
        cases = {"no mask (now)": step_fn(model, inputs, train), "mask kept (before)": step_fn(with_mask_forced(model), inputs, train)}
        for step in cases.values():
            step()
        seconds = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, step in cases.items():
                start = time.perf_counter()
                step()
                seconds[name].append(time.perf_counter() - start)
        ratio = np.array(seconds["no mask (now)"]) / np.array(seconds["mask kept (before)"])
        print(f"{'training step' if train else 'inference'}: no mask {np.median(seconds['no mask (now)']):.3f} s, "
              f"mask kept {np.median(seconds['mask kept (before)']):.3f} s, ratio {np.median(ratio):.2f}x "
              f"[{ratio.min():.2f}-{ratio.max():.2f}]")


if __name__ == "__main__":
    main()
