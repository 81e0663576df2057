#!/usr/bin/env bash
# The package as a library: build the wheel, install it (torch pinned first, not editable) into a fresh venv, then from
# a folder outside the checkout run the main job (`posattn-train`), check its card and `posattn-publish --dry-run`.
# Usage: bash scripts/check_wheel.sh [DIST_DIR] [VENV_DIR]   (about 2-3 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
dist=${1:-$PWD/.ci-dist}; venv=${2:-$PWD/.ci-wheel-venv}
step() { printf '[wheel %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
step "build the wheel into $dist"
python -m pip wheel --quiet --no-deps --wheel-dir "$dist" .
wheel=$(ls "$dist"/posattn-*.whl)
step "fresh venv $venv: torch==2.13.0, then $(basename "$wheel")"
rm -rf "$venv"; python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "torch==2.13.0"
"$venv/bin/python" -m pip install --quiet "$wheel"
work=$(mktemp -d)
step "posattn-train (the embedded default) in $work"
(cd "$work" && HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 "$venv/bin/posattn-train" --report_to none --disable_tqdm true > train.log 2>&1) \
  || { tail -40 "$work/train.log"; exit 1; }
grep -A4 "^| split" "$work/train.log"
(cd "$work" && "$venv/bin/python" - <<'PY'
import json, pathlib
run = pathlib.Path("outputs/synthetic-default")
accuracy = json.loads((run / "test_results.json").read_text())["test_accuracy"]
card = (run / "README.md").read_text()
assert accuracy > 0.9, f"the installed main job reached test accuracy {accuracy}"
assert f'repo = "{run.resolve()}"' in card, "the card's usage snippet does not point at the checkpoint"
print(f"installed wheel: test accuracy {accuracy:.4f}, card written")
PY
)
step "posattn-publish --dry-run"
(cd "$work" && "$venv/bin/posattn-publish" outputs/synthetic-default someone/posattn-demo --dry-run staged)
step "ok"
