#!/usr/bin/env python
"""`posattn-publish` from a checkout: check a checkpoint folder and upload it to the Hub (or `--dry-run DIR`)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout without install

from modeling_posattn.toolkit.publish import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
