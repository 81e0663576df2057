#!/usr/bin/env python
"""Fetch transformers' common model tests (`ModelTesterMixin`, `ConfigTester`) for the installed transformers version.

They are not in the wheel, only in the sdist. This script downloads the sdist of exactly `transformers.__version__`
with pip, extracts `tests/test_modeling_common.py` and `tests/test_configuration_common.py` into a gitignored cache,

    tests/.transformers_tests/transformers_common_tests/   (an importable package; pytest skips dot-directories)

and is a no-op when the cache already matches the installed version. `scripts/setup.sh` calls it; the test module
`tests/test_modeling_posattn_common.py` calls it too when the cache is missing.

The sdist ships only the top-level `tests/*.py` files, while the two files import three modules from sub-folders that
it does not ship. Each of these is extracted when a future sdist has it, and otherwise replaced by a documented shim:

- `tests/utils/test_configuration_utils.py`: only `config_common_kwargs`, the non-default values of
  `PreTrainedConfig`'s common arguments that `ConfigTester.check_config_arguments_init` sets (as in transformers 5.x).
- `tests/exporters/test_export.py`: `ExportTesterMixin`, the torch.export / ONNX / ExecuTorch export tests that
  `ModelTesterMixin` inherits; the shim is an empty mixin, so those export tests are not run.
- `tests/generation/test_utils.py`: `GenerationTesterMixin`, only used in an `issubclass` check for generative models
  (PosAttn is an encoder); the shim is an empty mixin.

Usage: `python scripts/fetch_transformers_tests.py [--sdist PATH_TO_TRANSFORMERS_SDIST.tar.gz] [--force]`.
Exit status 0 when the cache is ready, 1 with a message on stderr otherwise.
"""

import argparse
import fcntl
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / "tests" / ".transformers_tests"
PACKAGE_NAME = "transformers_common_tests"
PACKAGE_DIR = CACHE_DIR / PACKAGE_NAME
STAMP = PACKAGE_DIR / "TRANSFORMERS_VERSION"

# Files the common tests need, relative to the sdist's `tests/` folder.
REQUIRED = ("test_modeling_common.py", "test_configuration_common.py")

SHIM_HEADER = '"""Written by scripts/fetch_transformers_tests.py: the transformers sdist has no `tests/{path}`."""\n\n'
SHIMS = {
    "utils/test_configuration_utils.py": '''
# Non-default values of `PreTrainedConfig`'s common arguments, as in transformers 5.x's
# `tests/utils/test_configuration_utils.py`; `ConfigTester.check_config_arguments_init` checks that each one is stored.
config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["BertModel"],
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}
''',
    "exporters/test_export.py": '''

class ExportTesterMixin:
    """Empty stand-in: the export tests (torch.export, ONNX, ExecuTorch, ...) are not part of the sdist."""
''',
    "generation/test_utils.py": '''

class GenerationTesterMixin:
    """Empty stand-in: only used by `ModelTesterMixin` in an `issubclass` check for models that can generate."""
''',
}


def installed_transformers_version() -> str:
    import transformers

    return transformers.__version__


def stamp_text(version: str) -> str:
    """The transformers version, and a digest of what this script writes (a changed shim refreshes the cache)."""
    return f"{version} {hashlib.sha256(repr((REQUIRED, SHIM_HEADER, SHIMS)).encode()).hexdigest()[:12]}"


def cache_is_ready(version: str) -> bool:
    return (
        STAMP.is_file()
        and STAMP.read_text().strip() == stamp_text(version)
        and all((PACKAGE_DIR / name).is_file() for name in REQUIRED)
    )


def download_sdist(version: str, directory: Path) -> Path:
    command = [
        sys.executable, "-m", "pip", "download", f"transformers=={version}",
        "--no-binary", ":all:", "--no-deps", "--quiet", "-d", str(directory),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    archives = sorted(directory.glob("transformers-*.tar.gz"))
    if not archives:
        raise RuntimeError(
            f"`{' '.join(command)}` did not produce a transformers sdist (exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )
    return archives[0]


def extract(sdist: Path, version: str) -> None:
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=CACHE_DIR))
    try:
        package = staging / PACKAGE_NAME
        package.mkdir()
        with tarfile.open(sdist) as archive:
            members = {}
            for member in archive.getmembers():
                parts = Path(member.name).parts
                if len(parts) > 2 and parts[1] == "tests" and member.isfile():
                    members["/".join(parts[2:])] = member
            missing = [name for name in REQUIRED if name not in members]
            if missing:
                raise RuntimeError(f"{sdist.name} has no tests/{', tests/'.join(missing)}.")
            for relative in (*REQUIRED, *SHIMS):
                target = package / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                if relative in members:
                    target.write_bytes(archive.extractfile(members[relative]).read())
                else:
                    target.write_text(SHIM_HEADER.format(path=relative) + SHIMS[relative].lstrip("\n"))
        for folder in {package, *(p.parent for p in package.rglob("*.py"))}:
            (folder / "__init__.py").touch()
        (package / STAMP.name).write_text(stamp_text(version) + "\n")
        shutil.rmtree(PACKAGE_DIR, ignore_errors=True)
        (staging / PACKAGE_NAME).rename(PACKAGE_DIR)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fetch(sdist: Path | None = None, force: bool = False) -> Path:
    """Make the cache match the installed transformers; return the folder to put on `sys.path`."""
    version = installed_transformers_version()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # Several pytest-xdist workers may ask at once: one fetches, the others wait and find the cache ready.
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if force or not cache_is_ready(version):
            if sdist is not None:
                extract(sdist, version)
            else:
                with tempfile.TemporaryDirectory() as download_dir:
                    extract(download_sdist(version, Path(download_dir)), version)
    return CACHE_DIR


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdist", type=Path, help="use this transformers sdist (.tar.gz) instead of downloading it")
    parser.add_argument("--force", action="store_true", help="extract again even if the cache is up to date")
    args = parser.parse_args()
    try:
        fetch(args.sdist, args.force)
    except Exception as error:  # noqa: BLE001 - report any failure as one clear message
        print(f"fetch_transformers_tests: {error}", file=sys.stderr)
        return 1
    print(f"transformers {installed_transformers_version()} common tests ready in {PACKAGE_DIR.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
