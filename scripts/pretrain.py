#!/usr/bin/env python
"""`posattn-pretrain` from a checkout: masked-reconstruction pretraining of a PosAttn encoder with the stock `Trainer`.

    python scripts/pretrain.py                                     # synthetic data -> outputs/synthetic-pretrain
    python scripts/pretrain.py --config natops --mask_mode time_aligned --output_dir outputs/natops-pretrain
    python scripts/train.py --config natops --model_name_or_path outputs/natops-pretrain   # fine-tune from it

`python scripts/pretrain.py --help` lists the options (those of posattn-train plus the mask settings).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout without install

from modeling_posattn.toolkit.pretrain import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
