#!/usr/bin/env python
"""`posattn-train` from a checkout: train and evaluate a PosAttn classifier (or regressor) with the stock `Trainer`.

    python scripts/train.py                                   # the embedded SYNTHETIC timing task -> outputs/synthetic-default
    python scripts/train.py --config natops                   # a bundled recipe (configuration/natops.json)
    python scripts/train.py --config natops --seed 1,2,3      # three seeds, then mean ± std
    python scripts/train.py --dataset_name my_data.parquet --modalities modalities.json --output_dir outputs/mine
    accelerate launch --config_file configuration/accelerate_cpu_2proc.yaml scripts/train.py

`python scripts/train.py --help` lists the options (recipe first); `--help_all` adds every TrainingArguments flag.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout without install

from modeling_posattn.toolkit.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
