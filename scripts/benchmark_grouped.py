#!/usr/bin/env python
"""The embeddings' per-modality maps (Linear stems, gated fusion's gate) as one grouped GEMM over the tokens sorted by
modality, against the batched formula (every modality's map over every token), by number of modalities and width.

Each case is the embedding layer alone (stems, per-modality norm, multi-scale encoding, gated fusion), forward and
backward, on a packed batch of 8 x 512 tokens shared equally by the modalities. Interleaved rounds in one process, one
thread, denormals flushed; ratio grouped / batched within each round, median [min-max]. The whole training step's
ratio is `scripts/benchmark_versions.py`'s (cases "rich@8x512", "rich 4 modalities@8x512").

    python scripts/benchmark_grouped.py --rounds 15 --output docs/results/speed/intel_xeon
"""

import argparse
import contextlib
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchmark_speed import cpu_name, seconds_per_round  # noqa: E402

# feature widths of audio, video and two sensors, as in benchmark_versions.py's four-modality case
WIDTHS = {"audio": 40, "video": 64, "accelerometer": 6, "eeg": 16}
RATES = {"audio": 100.0, "video": 25.0, "accelerometer": 50.0, "eeg": 250.0}
SHAPES = [(2, 64), (4, 64), (2, 256), (4, 256)]  # (modalities, hidden size)


@contextlib.contextmanager
def batched_formula():
    """The batched formula everywhere: the embeddings are told the grouped path cannot run."""
    from modeling_posattn import embeddings_posattn

    allowed = embeddings_posattn.grouped_path_allowed
    embeddings_posattn.grouped_path_allowed = lambda tensor: False
    try:
        yield
    finally:
        embeddings_posattn.grouped_path_allowed = allowed


def embedding_step(num_modalities: int, hidden_size: int, length: int, batch_size: int):
    """`step(grouped)`: one forward and backward of a gated, multi-scale embedding layer of `num_modalities` Linear-stem
    modalities at `hidden_size`."""
    import numpy as np
    import torch

    from modeling_posattn import PosAttnConfig, PosAttnModel, PosAttnProcessor

    names = list(WIDTHS)[:num_modalities]
    modalities = {name: {"input_dim": WIDTHS[name], "sampling_rate": RATES[name]} for name in names}
    config = PosAttnConfig(modalities=modalities, hidden_size=hidden_size, num_hidden_layers=1,
                           num_attention_heads=4, intermediate_size=2 * hidden_size, hidden_dropout_prob=0.0,
                           max_position_embeddings=length, absolute_position_encoding="multiscale",
                           position_fusion="gated")
    torch.manual_seed(0)
    model = PosAttnModel(config).train()
    rng = np.random.default_rng(0)
    share = length // num_modalities
    samples = [{name: rng.normal(size=(share, WIDTHS[name])).astype("float32") for name in names}
               for _ in range(batch_size)]
    batch = dict(PosAttnProcessor(modalities=modalities)(samples, return_tensors="pt"))
    positions = model.token_positions(batch["input_values"], None, batch["modality_ids"], batch.get("position_ids"),
                                      batch.get("timestamps"), batch["attention_mask"])
    cotangent = torch.randn(*batch["modality_ids"].shape, hidden_size, generator=torch.Generator().manual_seed(0))

    def step(grouped: bool):
        model.zero_grad(set_to_none=True)
        with contextlib.nullcontext() if grouped else batched_formula():
            model.embeddings(batch["input_values"], None, positions).backward(cotangent)

    return step


def measure(shapes, rounds: int, length: int = 512, batch_size: int = 8) -> dict:
    rows = {}
    for num_modalities, hidden_size in shapes:
        step = embedding_step(num_modalities, hidden_size, length, batch_size)
        seconds = seconds_per_round({"batched": lambda: step(False), "grouped": lambda: step(True)}, rounds)
        ratios = [grouped / batched for grouped, batched in zip(seconds["grouped"], seconds["batched"])]
        row = {"batched_ms": 1e3 * statistics.median(seconds["batched"]),
               "grouped_ms": 1e3 * statistics.median(seconds["grouped"]),
               "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}
        rows[f"{num_modalities} x {hidden_size}"] = row
        print(f"M = {num_modalities}, H = {hidden_size}: batched {row['batched_ms']:.2f} ms, grouped {row['grouped_ms']:.2f} "
              f"ms, grouped / batched {row['ratio_median']:.2f}x [{row['ratio_min']:.2f}-{row['ratio_max']:.2f}]",
              flush=True)
    return rows


def write(results: dict, output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / "grouped.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"Machine: {results['machine']}. The embedding layer alone (Linear stems, per-modality norm, multi-scale "
             "encoding, gated fusion), forward and backward, 8 x 512 tokens shared equally by the modalities; "
             f"{results['rounds']} interleaved rounds; ms per step (median), grouped / batched per round, median "
             "[min-max]. `python scripts/benchmark_grouped.py`.", "",
             "| modalities x hidden size | batched ms | grouped ms | grouped / batched |", "|---|---:|---:|---:|"]
    for name, row in results["cases"].items():
        lines.append(f"| {name} | {row['batched_ms']:.2f} | {row['grouped_ms']:.2f} | {row['ratio_median']:.2f}x "
                     f"[{row['ratio_min']:.2f}-{row['ratio_max']:.2f}] |")
    (output / "grouped.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {output / 'grouped.md'} and {output / 'grouped.json'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--output", default=None, help="folder for grouped.md / grouped.json (printed only if absent)")
    args = parser.parse_args()
    import torch

    torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    results = {"machine": f"{cpu_name()}, 1 thread, torch {torch.__version__}, denormals flushed",
               "rounds": args.rounds, "cases": measure(SHAPES, args.rounds)}
    if args.output:
        write(results, Path(args.output))


if __name__ == "__main__":
    main()
