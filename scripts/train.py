#!/usr/bin/env python
"""Train and evaluate a PosAttn classifier (or regressor) with the stock `Trainer`.

    python scripts/train.py                                   # the embedded SYNTHETIC timing task -> outputs/synthetic-default
    python scripts/train.py --config configuration/natops.json
    python scripts/train.py --config configuration/natops.json --absolute_position_encoding dynamic --seed 1
    python scripts/train.py --dataset_name my_data.parquet --modalities modalities.json --output_dir outputs/mine
    accelerate launch --config_file configuration/accelerate_cpu_2proc.yaml scripts/train.py --num_train_epochs 2
    torchrun --nproc_per_node 2 scripts/train.py --use_cpu --num_train_epochs 2

Arguments are transformers' `TrainingArguments` plus the model and data groups of `modeling_posattn.training`
(`python scripts/train.py --help`). `--config FILE` loads a recipe: one JSON object with keys of any group; flags given
on the command line override it. Run with no arguments, it trains on the synthetic default and needs no data, no
network and no GPU.

Writes into `output_dir`: the best checkpoint (model + processor), `all_results.json`, `eval_results.json` (validation),
`test_results.json`, `train_results.json`, `trainer_state.json`, the model card `README.md`, TensorBoard logs in
`runs/`; prints a results table.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout without install

from modeling_posattn.training import main  # noqa: E402

if __name__ == "__main__":
    main()
