#!/usr/bin/env python
"""Split a study's runs.csv by the model each run actually trained, read from the run folder's saved config.json.

From 0dac520 (2026-11-30 21:53 UTC) to 1628cfc, every `--config` recipe inherited the embedded default's
`initializer_range` 0.1, `unit_scale_embeddings` off and length-grouped batches (configuration/synthetic.json), so the
runs of a study made before and after that commit trained different models. This keeps the rows of the intended recipe
(unit-scale embeddings, initializer_range 0.02) in the study's folder and moves the others to `<output>/unit_scale_off/`;
then `scripts/ablate.py --summarise` rewrites each table.

    python scripts/split_runs_by_recipe.py --output-dir docs/results/natops --runs-dir /work/runs/ablation/natops
"""

import argparse
import csv
import json
from pathlib import Path

LEAKED_FOLDER = "unit_scale_off"


def run_folder(runs_dir: Path, row: dict) -> Path:
    """The folder `scripts/ablate.py` trained this row in."""
    return runs_dir / f"{row['configuration'].replace(' ', '_').replace('|', '-')}-seed{row['seed']}"


def trained_with_unit_scale(folder: Path) -> bool:
    config = json.loads((folder / "config.json").read_text())
    return bool(config.get("unit_scale_embeddings", False))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", required=True, type=Path, help="the study's results folder (holds runs.csv)")
    parser.add_argument("--runs-dir", required=True, type=Path, help="the study's run folders (each with config.json)")
    args = parser.parse_args()

    with open(args.output_dir / "runs.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, list(reader)
    intended = [row for row in rows if trained_with_unit_scale(run_folder(args.runs_dir, row))]
    leaked = [row for row in rows if row not in intended]
    for folder, kept in ((args.output_dir, intended), (args.output_dir / LEAKED_FOLDER, leaked)):
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "runs.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)
    print(f"{args.output_dir}: {len(intended)} runs with the intended recipe, {len(leaked)} moved to {LEAKED_FOLDER}/")


if __name__ == "__main__":
    main()
