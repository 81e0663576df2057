#!/usr/bin/env python
"""Speed ratios of issue 13, measured interleaved in one process (so that load from other jobs hits every model of a
round alike), reported as median and min-max over rounds; peak memory in one fresh subprocess per configuration.

1. Training step (forward + backward) and inference of PosAttn vs HF `BertModel` (sdpa) at equal width, depth and
   tokens: `configuration/posattn-small.json` (hidden 64, 2 layers, 4 heads, MLP 128), 8 samples x 512 tokens. The
   inference rounds also time the entry checks alone (`model.validate_inputs`, the value checks every eager forward
   runs), so their share of a forward is measured, not guessed.
2. Training step at 4096 tokens (one sample, hidden 128, 4 layers, 4 heads): `alibi` / `relative_bias` vs `none`,
   with the default bias path (time-split from `time_split_min_length` tokens on), with the dense bias
   (`time_split_min_length=None`: dense up to `dense_bias_max_bytes`), forced onto the query-blocked path, and
   `relative_bias` the way it ran before its bias-gradient path (SDPA's math path).

The timed rounds run with denormal floats flushed to zero, as `posattn-train` runs (`--flush_denormal`, default on), set
before the first thread starts; with one thread (the default) the bias rounds also time `alibi` and `relative_bias` with
denormals kept, toggled around their own steps. `--keep-denormals` times everything with torch's default instead.
3. Peak memory (high-water mark of RSS, reset just before the step, minus the RSS then): inference at 16k tokens (bias encodings vs `sinusoidal`, 1 layer: an inference peak does not grow with
   depth) and a training step at 4096 tokens (rotary and bias encodings vs `sinusoidal`). Subprocesses run with
   `MALLOC_MMAP_THRESHOLD_=65536`: otherwise glibc's adaptive mmap threshold lets freed per-block buffers fragment the
   heap and peak RSS measures the allocator, not live tensors.

    python scripts/benchmark_speed.py                 # about 10 minutes on 2 shared cores
    python scripts/benchmark_speed.py --rounds 3 --skip-memory
    python scripts/benchmark_speed.py --rounds 30 --skip-bias --skip-memory   # the BERT comparison only, ~2 minutes
"""

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TWO_MODALITIES = {"audio": {"input_dim": 40, "sampling_rate": 100.0}, "video": {"input_dim": 64, "sampling_rate": 25.0}}
ONE_MODALITY = {"features": {"input_dim": 64, "sampling_rate": 100.0}}
WIDE = dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512)

MEMORY_WORKER = r"""
import json, sys
import numpy as np, torch
sys.path.insert(0, sys.argv[5])
from modeling_posattn import PosAttnConfig, PosAttnModel, PosAttnProcessor
settings, length, train, threads = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "train", int(sys.argv[4])
torch.set_num_threads(threads)
modalities = settings.pop("modalities")
config = PosAttnConfig(modalities=modalities, hidden_dropout_prob=0.0, max_position_embeddings=length,
                       attn_implementation="sdpa", **settings)
torch.manual_seed(0)
model = PosAttnModel(config).train(train)
rng = np.random.default_rng(0)
audio = int(length * 0.8)
batch = PosAttnProcessor(modalities=modalities)(
    [{"audio": rng.normal(size=(audio, 40)), "video": rng.normal(size=(length - audio, 64))}], return_tensors="pt")
def rss_mb(field):
    line = next(line for line in open("/proc/self/status") if line.startswith(field))
    return int(line.split()[1]) / 1024
before = rss_mb("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark: the setup's own peak must not hide the step's
if train:
    model(**batch).last_hidden_state.square().mean().backward()
else:
    with torch.no_grad():
        model(**batch)
print(json.dumps({"peak_mb": rss_mb("VmHWM:") - before}))
"""


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def posattn_case(modalities, length, batch_size, **settings):
    """A PosAttn model and a packed batch of `batch_size` samples of `length` tokens (80/20 split with two modalities)."""
    import numpy as np
    import torch

    from modeling_posattn import PosAttnConfig, PosAttnModel, PosAttnProcessor

    config = PosAttnConfig(modalities=modalities, hidden_dropout_prob=0.0, max_position_embeddings=length,
                           attn_implementation="sdpa", **settings)
    torch.manual_seed(0)
    model = PosAttnModel(config)
    rng = np.random.default_rng(0)
    names = list(modalities)
    counts = [length] if len(names) == 1 else [int(length * 0.8), length - int(length * 0.8)]
    samples = [
        {name: rng.normal(size=(count, modalities[name]["input_dim"])).astype("float32") for name, count in zip(names, counts)}
        for _ in range(batch_size)
    ]
    return model, dict(PosAttnProcessor(modalities=modalities)(samples, return_tensors="pt"))


def bert_case(length, batch_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, **_):
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                        num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, vocab_size=1000,
                        max_position_embeddings=length, attn_implementation="sdpa")
    torch.manual_seed(0)
    inputs = {"input_ids": torch.randint(0, 1000, (batch_size, length)),
              "attention_mask": torch.ones(batch_size, length, dtype=torch.long)}
    return BertModel(config, add_pooling_layer=False), inputs


def step_fn(model, inputs, train: bool):
    import torch

    def step():
        if train:
            model.train()
            model.zero_grad(set_to_none=True)
            model(**inputs).last_hidden_state.square().mean().backward()
        else:
            model.eval()
            with torch.no_grad():
                model(**inputs)

    return step


def seconds_per_round(cases: dict, rounds: int, steps: int = 1) -> dict:
    """After one warm-up call each, every case timed once per round, in turn: name -> seconds per step, per round."""
    for step in cases.values():
        step()  # warm-up
    seconds = {name: [] for name in cases}
    for _ in range(rounds):
        for name, step in cases.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            seconds[name].append((time.perf_counter() - start) / steps)
    return seconds


def interleaved(cases: dict, baseline: str, rounds: int, steps: int) -> dict:
    """Time every case once per round, in turn; ratio to `baseline` within each round; median and spread over rounds."""
    seconds = seconds_per_round(cases, rounds, steps)
    summary = {}
    for name, values in seconds.items():
        ratios = [value / reference for value, reference in zip(values, seconds[baseline])]
        summary[name] = {"seconds_median": statistics.median(values), "ratio_median": statistics.median(ratios),
                         "ratio_min": min(ratios), "ratio_max": max(ratios)}
        print(f"  {name:>28}: {summary[name]['seconds_median']:.3f} s, {summary[name]['ratio_median']:.2f}x "
              f"[{summary[name]['ratio_min']:.2f}-{summary[name]['ratio_max']:.2f}] vs {baseline}", flush=True)
    return summary


def peak_memory(settings: dict, length: int, mode: str, threads: int) -> float:
    environment = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS=str(threads))
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_WORKER, json.dumps(settings), str(length), mode, str(threads), str(ROOT)],
        capture_output=True, text=True, env=environment,
    )
    if result.returncode != 0:
        raise SystemExit(f"memory run {settings} at {length} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mb"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds for the BERT comparison")
    parser.add_argument("--bias-rounds", type=int, default=2, help="interleaved rounds at 4096 tokens")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-bias", action="store_true", help="skip the 4096-token bias comparison")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--output", default="docs/results/speed")
    parser.add_argument("--keep-denormals", action="store_true", help="do not flush denormals (torch's default)")
    args = parser.parse_args()

    import torch

    flushed = not args.keep_denormals and torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    small = json.loads((ROOT / "configuration" / "posattn-small.json").read_text())
    small = {key: small[key] for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")}
    results = {"machine": f"{cpu_name()}, {args.threads} thread(s), torch {torch.__version__}, denormals "
                          f"{'flushed' if flushed else 'kept'}, load average {os.getloadavg()[0]:.1f} at the start"}

    print("1. vs BertModel (sdpa), small preset, 8 x 512 tokens", flush=True)
    models = {
        "bert": bert_case(512, 8, **small),
        "sinusoidal": posattn_case(ONE_MODALITY, 512, 8, **small),
        "rope": posattn_case(ONE_MODALITY, 512, 8, absolute_position_encoding="none", relative_position_encoding="rope", **small),
        "multiscale+gated+time_rope (2 mod.)": posattn_case(
            TWO_MODALITIES, 512, 8, absolute_position_encoding="multiscale", position_fusion="gated",
            relative_position_encoding="time_rope", **small),
    }
    for mode in ("train", "inference"):
        print(f" {mode}", flush=True)
        cases = {name: step_fn(model, inputs, mode == "train") for name, (model, inputs) in models.items()}
        if mode == "inference":
            for name in ("sinusoidal", "multiscale+gated+time_rope (2 mod.)"):
                model, inputs = models[name]
                cases[f"{name}: entry checks only"] = lambda model=model, inputs=inputs: model.validate_inputs(**inputs)
        results[f"vs_bert_{mode}"] = interleaved(cases, "bert", args.rounds, steps=2)
    del models

    if not args.skip_bias:
        bias_ratios(results, args, compare_denormals=flushed and args.threads == 1)
    if not args.skip_memory:
        peak_memory_table(results, args)
    write(results, Path(args.output), args)


def bias_ratios(results: dict, args, compare_denormals: bool) -> None:
    print("2. bias encodings at 4096 tokens, training step, vs none", flush=True)
    alibi, relative = (dict(absolute_position_encoding="none", relative_position_encoding=name) for name in ("alibi", "relative_bias"))
    unsplit = dict(time_split_min_length=None)
    bias_cases = {
        "none": dict(absolute_position_encoding="none"),
        "alibi": alibi,
        "alibi (dense bias, no time split)": dict(alibi, **unsplit),
        "alibi (query-blocked)": dict(alibi, **unsplit, dense_bias_max_bytes=0),
        "relative_bias": relative,
        "relative_bias (dense bias, no time split)": dict(relative, **unsplit),
    }
    cases = {name: step_fn(*posattn_case(TWO_MODALITIES, 4096, 1, **WIDE, **settings), True) for name, settings in bias_cases.items()}
    relative_bias_step = cases["relative_bias (dense bias, no time split)"]

    def relative_bias_as_before():
        with without_bias_gradient_path():
            relative_bias_step()

    cases["relative_bias (SDPA math path, as before)"] = relative_bias_as_before
    if compare_denormals:  # one thread: the mode set here is the only one that computes
        for name in ("alibi", "relative_bias"):
            cases[f"{name} (denormals kept)"] = with_denormals_kept(cases[name])
    results["bias_train_4096"] = interleaved(cases, "none", args.bias_rounds, steps=1)
    del cases


def with_denormals_kept(step):
    import torch

    def step_with_denormals():
        torch.set_flush_denormal(False)
        try:
            step()
        finally:
            torch.set_flush_denormal(True)

    return step_with_denormals


@contextlib.contextmanager
def without_bias_gradient_path():
    """The model as it was before `SdpaWithBiasGradient`: transformers' sdpa for every mask (its math path for a bias
    that needs a gradient) and `relative_bias`'s lookup by advanced indexing (autograd's scatter-add backward)."""
    import torch

    from modeling_posattn import attention_posattn, bias_posattn

    def transformers_sdpa(*args, **kwargs):
        return attention_posattn.ALL_ATTENTION_FUNCTIONS["sdpa"](*args, **kwargs)

    def dense_bias_by_indexing(encoding, time_delta, padding_keys, dtype):
        bias = encoding.score(time_delta, torch.arange(encoding.num_heads).view(1, -1, 1, 1)).to(dtype)
        return bias if padding_keys is None else bias.masked_fill_(padding_keys, torch.finfo(dtype).min)

    bias_class = bias_posattn.RelativeTimeBias
    saved = attention_posattn.sdpa_attention_forward, bias_class.dense_bias
    attention_posattn.sdpa_attention_forward, bias_class.dense_bias = transformers_sdpa, dense_bias_by_indexing
    try:
        yield
    finally:
        attention_posattn.sdpa_attention_forward, bias_class.dense_bias = saved


def peak_memory_table(results: dict, args) -> None:
    print("3. peak memory (fresh subprocess each)", flush=True)
    memory = {}
    one_layer = dict(WIDE, num_hidden_layers=1, modalities=TWO_MODALITIES)
    for name, settings in [
        ("sinusoidal", dict(absolute_position_encoding="sinusoidal")),
        ("alibi", dict(absolute_position_encoding="none", relative_position_encoding="alibi")),
        ("relative_bias", dict(absolute_position_encoding="none", relative_position_encoding="relative_bias")),
    ]:
        memory[f"inference_16384/{name}"] = peak_memory(dict(one_layer, **settings), 16384, "inference", args.threads)
        print(f"  inference 16384 {name}: {memory[f'inference_16384/{name}']:.0f} MB", flush=True)
    for name, settings in [
        ("sinusoidal", dict(absolute_position_encoding="sinusoidal")),
        ("rope", dict(absolute_position_encoding="none", relative_position_encoding="rope")),
        ("time_rope", dict(absolute_position_encoding="none", relative_position_encoding="time_rope")),
        ("alibi", dict(absolute_position_encoding="none", relative_position_encoding="alibi")),
        ("alibi (dense bias)", dict(absolute_position_encoding="none", relative_position_encoding="alibi",
                                    time_split_min_length=None)),
        ("relative_bias", dict(absolute_position_encoding="none", relative_position_encoding="relative_bias")),
        ("relative_bias (dense bias)", dict(absolute_position_encoding="none", relative_position_encoding="relative_bias",
                                            time_split_min_length=None)),
    ]:
        memory[f"train_4096/{name}"] = peak_memory(dict(WIDE, modalities=TWO_MODALITIES, **settings), 4096, "train", args.threads)
        print(f"  training 4096 {name}: {memory[f'train_4096/{name}']:.0f} MB", flush=True)
    results["peak_memory_mb"] = memory


def write(results: dict, output: Path, args) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / "speed.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"Machine: {results['machine']}. Ratios are per interleaved round, median [min-max]; other jobs on the "
             "machine add run-to-run noise (10% or more when it is shared).", ""]
    for key, title in [("vs_bert_train", f"Training step vs BertModel (sdpa), small preset, 8 x 512 ({args.rounds} rounds)"),
                       ("vs_bert_inference", f"Inference vs BertModel (sdpa), small preset, 8 x 512 ({args.rounds} rounds)"),
                       ("bias_train_4096", f"Training step at 4096 tokens vs `none` ({args.bias_rounds} rounds)")]:
        if key not in results:
            continue
        lines += [f"### {title}", "", "| model | s / step (median) | ratio median | min-max |", "|---|---:|---:|---:|"]
        for name, row in results[key].items():
            lines.append(f"| {name} | {row['seconds_median']:.3f} | {row['ratio_median']:.2f}x | "
                         f"{row['ratio_min']:.2f}-{row['ratio_max']:.2f}x |")
        lines.append("")
    if "peak_memory_mb" in results:
        memory = results["peak_memory_mb"]
        lines += ["### Peak memory (RSS high-water mark, reset just before the step, minus RSS then; fresh process each, MB)", "", "| run | MB | vs sinusoidal |",
                  "|---|---:|---:|"]
        for key, value in memory.items():
            reference = memory[key.split("/")[0] + "/sinusoidal"]
            lines.append(f"| {key} | {value:.0f} | {value / reference:.2f}x |")
    (output / "speed.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {output / 'speed.md'} and {output / 'speed.json'}")


if __name__ == "__main__":
    main()
