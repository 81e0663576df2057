#!/usr/bin/env python
"""Recipe search on a small dataset, honestly: settings are compared by stratified k-fold CV on the TRAINING split;
only the chosen recipe is then scored on the test split (`--test`).

    python scripts/recipe_search.py --dataset natops --grid grid.json --folds 3 --seeds 1 --jobs 2 --tag stage1
    python scripts/recipe_search.py --dataset natops --recipe recipe.json --test --seeds 5 --tag final

A grid is a JSON list of recipe overrides (each merged over `BASE`); `--recipe` is one recipe. Every run trains a fixed
budget on all rows it is given and is scored with the last (or EMA-averaged, `ema`) weights: no checkpoint selection.
Results are appended as JSON lines to `outputs/recipe_search/<tag>.jsonl`, with a summary per recipe on stdout.

A plain torch loop (not Trainer) keeps each NATOPS run near a minute on one free core; augmentation
(`toolkit/augmentation.py`) is done on the raw frames before the processor, with the same time transform for every
clocked modality of a sample (they stay aligned); `ema` averages weights with torch's `AveragedModel`, as
`toolkit/averaging.py` does for Trainer.
"""

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

BASE = {
    # model
    "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
    "hidden_dropout_prob": 0.1, "absolute_position_encoding": "none", "relative_position_encoding": "time_rope",
    "position_fusion": "add", "unit_scale_embeddings": True, "stem": {"type": "linear"}, "pooling": "mean",
    # data
    "dataset_options": {"grouping": "parts"},
    # training
    "epochs": 60, "learning_rate": 3e-3, "batch_size": 16, "weight_decay": 0.01, "warmup_ratio": 0.1,
    "label_smoothing": 0.0, "ema": None,
    # augmentation (0 = off)
    "jitter": 0.0, "scaling": 0.0, "time_warp": 0.0, "window_slice": 1.0, "modality_dropout": 0.0,
}  # fmt: skip


def load(dataset: str, options: dict):
    from modeling_posattn.toolkit.data import load_builtin_dataset

    data = load_builtin_dataset(dataset, **options)
    splits = {}
    for split in ("train", "test"):
        table = data.dataset[split]
        rows = []
        for row in table:
            sample = {name: (np.asarray(row[name], dtype=np.float64) if row[name] is not None else None) for name in data.modalities}
            if row.get("timestamps"):
                sample["timestamps"] = {k: np.asarray(v) for k, v in row["timestamps"].items() if v is not None}
            sample["labels"] = int(row["labels"])
            rows.append(sample)
        splits[split] = rows
    return data, splits


def build(recipe: dict, data):
    from modeling_posattn import PosAttnConfig, PosAttnForSequenceClassification

    modalities = {name: {**spec, "stem": recipe["stem"]} if spec.get("input_dim") else spec for name, spec in data.modalities.items()}
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_dropout_prob",
            "absolute_position_encoding", "relative_position_encoding", "position_fusion", "unit_scale_embeddings", "pooling")  # fmt: skip
    config = PosAttnConfig(
        modalities=modalities, num_labels=data.num_labels, max_position_embeddings=recipe.get("max_position_embeddings", 64),
        **{k: recipe[k] for k in keys},
    )
    return modalities, PosAttnForSequenceClassification(config)


def train_and_score(recipe: dict, dataset: str, train_rows: list, eval_rows: list, seed: int) -> dict:
    import torch
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    from transformers import get_cosine_schedule_with_warmup, set_seed

    from modeling_posattn import PosAttnProcessor
    from modeling_posattn.toolkit.augmentation import TimeSeriesAugmentation

    torch.set_num_threads(1)
    started = time.time()
    data, _ = _DATA[(dataset, json.dumps(recipe["dataset_options"], sort_keys=True))]
    set_seed(seed)
    modalities, model = build(recipe, data)
    processor = PosAttnProcessor(modalities=modalities).fit([{k: v for k, v in r.items() if k != "labels"} for r in train_rows])
    augment = TimeSeriesAugmentation(
        **{k: recipe[k] for k in ("jitter", "scaling", "time_warp", "window_slice", "modality_dropout")},
        channel_std={name: np.asarray(stats["std"]) for name, stats in processor.normalization.items()},
        sampling_rates={name: spec.get("sampling_rate") for name, spec in modalities.items()},
    )
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(recipe["ema"])) if recipe["ema"] else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe["learning_rate"], weight_decay=recipe["weight_decay"])
    batch, epochs = recipe["batch_size"], recipe["epochs"]
    steps = epochs * -(-len(train_rows) // batch)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(recipe["warmup_ratio"] * steps), steps)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=recipe["label_smoothing"])
    rng = np.random.default_rng(seed)
    last_loss = float("nan")
    for _ in range(epochs):
        model.train()
        order = rng.permutation(len(train_rows))
        losses = []
        for begin in range(0, len(order), batch):
            rows = [train_rows[i] for i in order[begin : begin + batch]]
            if augment.active:
                rows = [augment(r, rng) for r in rows]
            inputs = dict(processor(rows, return_tensors="pt"))
            labels = inputs.pop("labels")
            loss = loss_fn(model(**inputs).logits, labels)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            losses.append(loss.item())
        last_loss = float(np.mean(losses))
    scorer = ema.module if ema is not None else model
    scorer.eval()
    correct = 0
    with torch.no_grad():
        for begin in range(0, len(eval_rows), 64):
            inputs = dict(processor(eval_rows[begin : begin + 64], return_tensors="pt"))
            labels = inputs.pop("labels")
            correct += int((scorer(**inputs).logits.argmax(-1) == labels).sum())
    return {"accuracy": correct / len(eval_rows), "train_loss": last_loss, "seconds": time.time() - started}


_DATA: dict = {}


def run_one(job: dict) -> dict:
    recipe, dataset = job["recipe"], job["dataset"]
    key = (dataset, json.dumps(recipe["dataset_options"], sort_keys=True))
    if key not in _DATA:
        _DATA[key] = load(dataset, recipe["dataset_options"])
    _, splits = _DATA[key]
    train = splits["train"]
    if job["fold"] is None:
        train_rows, eval_rows = train, splits["test"]
    else:
        from sklearn.model_selection import StratifiedKFold

        labels = [r["labels"] for r in train]
        folds = StratifiedKFold(job["folds"], shuffle=True, random_state=job["split_seed"]).split(np.zeros(len(labels)), labels)
        train_index, eval_index = list(folds)[job["fold"]]
        train_rows, eval_rows = [train[i] for i in train_index], [train[i] for i in eval_index]
    result = train_and_score(recipe, dataset, train_rows, eval_rows, job["seed"])
    return {**{k: job[k] for k in ("name", "seed", "fold")}, **result, "recipe": recipe}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="natops")
    parser.add_argument("--grid", help="JSON file: a list of {name, ...overrides}")
    parser.add_argument("--recipe", help="JSON file or string: one recipe (overrides of BASE)")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--test", action="store_true", help="train on all train rows, score on test (final recipe only)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--tag", required=True)
    args = parser.parse_args()
    if args.grid:
        entries = json.loads(Path(args.grid).read_text())
    else:
        text = Path(args.recipe).read_text() if os.path.isfile(args.recipe) else args.recipe
        entries = [json.loads(text)]
    jobs = []
    for entry in entries:
        recipe = {**BASE, **{k: v for k, v in entry.items() if k != "name"}}
        name = entry.get("name", "recipe")
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for fold in [None] if args.test else range(args.folds):
                jobs.append({"recipe": recipe, "dataset": args.dataset, "name": name, "seed": seed, "fold": fold,
                             "folds": args.folds, "split_seed": seed})  # fmt: skip
    out = Path("outputs/recipe_search") / f"{args.tag}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[float]] = {}
    with ProcessPoolExecutor(args.jobs) as pool, open(out, "a") as log:
        for result in pool.map(run_one, jobs):
            log.write(json.dumps(result) + "\n")
            log.flush()
            results.setdefault(result["name"], []).append(result["accuracy"])
            print(f"{result['name']:40s} seed {result['seed']} fold {result['fold']}: acc {result['accuracy']:.4f} "
                  f"loss {result['train_loss']:.3f} {result['seconds']:.0f}s", flush=True)  # fmt: skip
    print("\nsummary (" + ("test" if args.test else f"{args.folds}-fold CV on train") + ")")
    for name, scores in results.items():
        print(f"{name:40s} mean {np.mean(scores):.4f} sd {np.std(scores, ddof=1) if len(scores) > 1 else 0:.4f} n {len(scores)}")


if __name__ == "__main__":
    sys.exit(main())
