#!/usr/bin/env python
"""Where the richest configuration's time goes against BERT: the training step (or inference) of HF `BertModel`
(sdpa) and of PosAttn models that add one piece at a time, from one modality without any position encoding up to two
modalities with multiscale + gated + time_rope (`benchmark_speed.py`'s richest case), and that configuration with one
piece taken out. Small preset, 8 samples x 512 tokens, interleaved in one process, each model's time / BERT's per round,
median [min-max]. Writes `parts.md` / `parts.json` to `--output` when given.

    python scripts/benchmark_parts.py --rounds 15
    python scripts/benchmark_parts.py --rounds 15 --inference --output docs/results/speed/intel_xeon
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from benchmark_speed import ONE_MODALITY, TWO_MODALITIES, bert_case, cpu_name, interleaved, posattn_case, step_fn  # noqa: E402

RICHEST = dict(absolute_position_encoding="multiscale", position_fusion="gated", relative_position_encoding="time_rope")
NOTHING = dict(absolute_position_encoding="none", relative_position_encoding="none")
# name -> (modalities, settings); each row adds (or, below the richest, removes) one piece
PARTS = {
    "1 modality, no position encoding": (ONE_MODALITY, NOTHING),
    "1 modality, sinusoidal (the benchmark's single-modality case)": (ONE_MODALITY, {}),
    "1 modality, rope": (ONE_MODALITY, dict(NOTHING, relative_position_encoding="rope")),
    "2 modalities, no position encoding": (TWO_MODALITIES, NOTHING),
    "2 modalities, time_rope": (TWO_MODALITIES, dict(NOTHING, relative_position_encoding="time_rope")),
    "2 modalities, multiscale (added) + time_rope": (TWO_MODALITIES, dict(RICHEST, position_fusion="add")),
    "2 modalities, multiscale + gated, no rotary": (TWO_MODALITIES, dict(RICHEST, relative_position_encoding="none")),
    "2 modalities, multiscale + gated + time_rope (the richest)": (TWO_MODALITIES, RICHEST),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--inference", action="store_true", help="time inference instead of a training step")
    parser.add_argument("--output", default=None, help="folder for parts.md / parts.json (printed only if absent)")
    args = parser.parse_args()
    import torch

    flushed = torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    small = json.loads((ROOT.parent / "configuration" / "posattn-small.json").read_text())
    small = {key: small[key] for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")}
    train = not args.inference
    cases = {"BertModel (sdpa)": step_fn(*bert_case(512, 8, **small), train)}
    for name, (modalities, settings) in PARTS.items():
        cases[name] = step_fn(*posattn_case(modalities, 512, 8, **small, **settings), train)
    mode = "training step" if train else "inference"
    print(f"{mode}, small preset, 8 x 512, vs BertModel", flush=True)
    timings = interleaved(cases, "BertModel (sdpa)", args.rounds, steps=2)
    results = {"machine": f"{cpu_name()}, 1 thread, torch {torch.__version__}, denormals "
                          f"{'flushed' if flushed else 'kept'}", "mode": mode, "rounds": args.rounds, "timings": timings}
    if args.output:
        write(results, Path(args.output), suffix="" if train else "_inference")


def write(results: dict, output: Path, suffix: str = "") -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / f"parts{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"Machine: {results['machine']}. {results['mode'].capitalize()}, small preset, 8 x 512 tokens, "
        f"{results['rounds']} interleaved rounds; time / BertModel's per round, median [min-max].",
        "",
        "| model | seconds | / BertModel |",
        "|---|---:|---:|",
    ]
    for name, row in results["timings"].items():
        lines.append(f"| {name} | {row['seconds_median']:.4f} | {row['ratio_median']:.2f}x "
                     f"[{row['ratio_min']:.2f}-{row['ratio_max']:.2f}] |")
    (output / f"parts{suffix}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {output / f'parts{suffix}.md'}")


if __name__ == "__main__":
    main()
