#!/usr/bin/env bash
# Installs posattn and its development tools into the active Python environment (about 2 minutes on 2 cores).
# torch is pinned first: the CPU wheel 2.13.0 is local on these machines; an unpinned torch pulls several GB of CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
step "1/4 pip"
python -m pip install --quiet --upgrade pip
step "2/4 torch==2.13.0 (CPU wheel)"
python -m pip install --quiet "torch==2.13.0"
step "3/4 posattn, editable, with the dev extra (transformers, datasets, accelerate, evaluate, pytest...)"
python -m pip install --quiet -e ".[dev]"
step "4/4 transformers' common model tests from its sdist (tests/.transformers_tests)"
python scripts/fetch_transformers_tests.py
step "done: posattn-train, posattn-publish and scripts/*.py are ready"
