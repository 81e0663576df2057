#!/usr/bin/env bash
# Installs posattn and its development tools into the active Python environment.
# torch is pinned first: the CPU wheel 2.13.0 is local on these machines; an unpinned torch pulls several GB of CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[dev]"
# transformers' common model tests (ModelTesterMixin, ConfigTester) come from the sdist of the installed version.
python scripts/fetch_transformers_tests.py
