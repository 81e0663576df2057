#!/usr/bin/env python
"""torch.compile speed-up on CPU (issue 13, item 3): eager against `torch.compile(model, fullgraph=True)` (inductor),
interleaved in one process, median and min-max of the per-round ratio; the small preset (as `benchmark_speed.py`),
8 samples x 512 tokens, a training step (forward + backward) and inference. Compile time is the first call's. Run from
the repository root (inductor builds C++: the first call takes minutes on a loaded machine):
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 TORCHINDUCTOR_COMPILE_THREADS=1 python scripts/benchmark_compile.py
"""

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from benchmark_speed import ONE_MODALITY, TWO_MODALITIES, interleaved, posattn_case, step_fn  # noqa: E402

ENCODINGS = {
    "sinusoidal": (ONE_MODALITY, {}),
    "multiscale+gated+time_rope (2 mod.)": (
        TWO_MODALITIES,
        dict(absolute_position_encoding="multiscale", position_fusion="gated", relative_position_encoding="time_rope"),
    ),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--encodings", nargs="+", default=list(ENCODINGS), choices=list(ENCODINGS))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    small = json.loads((ROOT.parent / "configuration" / "posattn-small.json").read_text())
    small = {key: small[key] for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")}
    for name in args.encodings:
        modalities, settings = ENCODINGS[name]
        model, inputs = posattn_case(modalities, 512, 8, **small, **settings)
        compiled = torch.compile(model, fullgraph=True)
        for mode in ("train", "inference"):
            cases = {"eager": step_fn(model, inputs, mode == "train"), "compiled": step_fn(compiled, inputs, mode == "train")}
            start = time.perf_counter()
            cases["compiled"]()
            print(f"{name}, {mode}: first compiled call {time.perf_counter() - start:.0f} s", flush=True)
            interleaved(cases, "eager", args.rounds, steps=2)


if __name__ == "__main__":
    main()
