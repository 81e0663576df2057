#!/usr/bin/env bash
# The test suite, offline, on 2 CPU processes. Tests needing ../shared/data skip with a reason when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
python -m pytest -n 2 -q "$@"
