"""`posattn-publish`: publish a PosAttn checkpoint folder to the Hugging Face Hub.

    posattn-publish CHECKPOINT_DIR USER/REPO [--private] [--revision BRANCH] [--commit-message MSG]
    posattn-publish CHECKPOINT_DIR USER/REPO --dry-run OUT_DIR     # no network: writes what would be uploaded

Only an allow-list is uploaded: regular files (no symlinks: a link is refused, so `ln -s ~/.netrc notes.txt` cannot leak
a secret), no dotfiles or dot-folders (`.env`, `.git`: left out), and only the kinds a checkpoint holds
(`ALLOWED_SUFFIXES`: safetensors, json, py, md, txt, images); anything else is left out and listed. Pickles are refused
by name (any suffix of the name: `.pth.tar`, `.pkl.gz`, `.npy`...) and by content (a pickle stream, a torch zip, a
compressed pickle, a numpy array of objects), whatever the file is called.

The folder is checked first and refused, with the list of problems, unless it is a complete remote-code checkpoint:
`config.json` whose `auto_map` names AutoConfig, AutoModel and AutoModelForSequenceClassification; a
`preprocessor_config.json` whose `auto_map` names AutoFeatureExtractor and AutoProcessor; every code file those
entries need (and the files they import with `from .x import y`), and no `auto_map` entry of any `*config.json`
(`processor_config.json`, which `AutoProcessor` reads first, included; string or list form) pointing at another
repository's code; weights in `*.safetensors`; no pickle; and a `README.md` model card (`modeling_posattn.toolkit.card`) that
parses. Trainer's `training_args.bin` (a pickle of the training arguments) and checkpoint sub-folders are left out
of the upload rather than refused; `--exclude` leaves out more.

What gets uploaded is a staged copy of the folder (the card's usage snippet pointed at the target repo);
`--dry-run DIR` writes exactly that copy into DIR. The network is touched by three `huggingface_hub.HfApi` calls only:
`create_repo`, `create_branch` (when `--revision` names a branch other than main) and `upload_folder`.
Authentication is huggingface_hub's: `--token`, `HF_TOKEN`, or `hf auth login`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

from .upload_files import (
    DEFAULT_EXCLUDE,
    looks_like_pickle_by_name,
    classify_files,
    pickle_content,
    staged_files,
)

REQUIRED_MODEL_AUTO_CLASSES = ("AutoConfig", "AutoModel", "AutoModelForSequenceClassification")
REQUIRED_PROCESSOR_AUTO_CLASSES = ("AutoFeatureExtractor", "AutoProcessor")
ABSOLUTE_PACKAGE_IMPORT = re.compile(r"^\s*(?:from\s+modeling_posattn[\s.]|import\s+modeling_posattn\b)", re.MULTILINE)
UNFOLLOWED_RELATIVE_IMPORT = re.compile(r"^\s*from\s+\.(?:\s+import|\.)", re.MULTILINE)


class CheckpointError(ValueError):
    """The folder is not a complete, safe PosAttn checkpoint; the message lists every problem."""


def _code_files_needed(folder: Path, auto_map: dict, problems: list[str], where: str) -> set[str]:
    """The code files that the `auto_map` entries need, following `from .x import y` as transformers does when it
    copies and loads remote code; a missing file or an import form transformers cannot follow is a problem."""
    from transformers.dynamic_module_utils import get_relative_imports

    needed: set[str] = set()
    pending = []
    if not isinstance(auto_map, dict):
        problems.append(f"{where}: auto_map must be a dict, got {type(auto_map).__name__}.")
        return needed
    for auto_class, entry in auto_map.items():
        # a string, or a list such as a tokenizer's [slow, fast] pair (None for an absent half): check every element
        references = list(entry) if isinstance(entry, (list, tuple)) else [entry]
        for reference in references:
            if reference is None and isinstance(entry, (list, tuple)):
                continue
            if not isinstance(reference, str) or "." not in reference:
                problems.append(f"{where}: auto_map[{auto_class!r}] = {entry!r} is not 'module.Class'.")
            elif "--" in reference or "/" in reference or "\\" in reference:
                problems.append(
                    f"{where}: auto_map[{auto_class!r}] = {entry!r} points at code in another repository; a published "
                    "checkpoint must carry its own code."
                )
            else:
                pending.append((f"{reference.rsplit('.', 1)[0]}.py", f"{where}: auto_map[{auto_class!r}]"))
    while pending:
        name, needed_by = pending.pop()
        if name in needed:
            continue
        path = folder / name
        if not path.is_file():
            problems.append(f"{needed_by} needs {name}, which is missing.")
            continue
        needed.add(name)
        source = path.read_text(encoding="utf-8")
        if UNFOLLOWED_RELATIVE_IMPORT.search(source):
            problems.append(f"{name} uses `from . import x` or `from ..x import y`, which transformers does not copy.")
        pending.extend((f"{module}.py", name) for module in get_relative_imports(path))
    return needed


def check_checkpoint(folder: str | Path, exclude: tuple[str, ...] = DEFAULT_EXCLUDE) -> list[str]:
    """Every reason the folder cannot be published (an empty list: it can)."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a folder."]
    problems: list[str] = []
    fates = classify_files(folder, exclude)
    if fates["links"]:
        problems.append(
            f"Symbolic links: {fates['links']}. publish uploads regular files only (a link can point at a secret "
            "such as ~/.netrc): replace each link by the file itself or remove it."
        )
    names = set(fates["upload"])
    for name in fates["left_out"]:
        if looks_like_pickle_by_name(name) or (folder / name).is_file() and not (folder / name).is_symlink() and pickle_content(folder / name):
            names.add(name)  # a pickle is refused below even where it would only be left out
    pickles = [name for name in sorted(names) if looks_like_pickle_by_name(name)]
    pickles += [f"{name} ({why})" for name in sorted(names) if name not in pickles and (why := pickle_content(folder / name))]
    if pickles:
        problems.append(
            f"Pickle files would be uploaded: {pickles}. Weights must be safetensors only (re-save "
            "with `save_pretrained`, which writes model.safetensors); remove other pickles or pass --exclude."
        )
    names -= {name.split(" (")[0] for name in pickles}

    code_needed: set[str] = set()
    config_path = folder / "config.json"
    if "config.json" not in names:
        problems.append("config.json is missing.")
    else:
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            problems.append(f"config.json does not parse: {error}.")
            config = {}
        if config and config.get("model_type") != "posattn":
            problems.append(f"config.json: model_type is {config.get('model_type')!r}, expected 'posattn'.")
        auto_map = config.get("auto_map") or {}
        missing = [name for name in REQUIRED_MODEL_AUTO_CLASSES if name not in auto_map]
        if config and missing:
            problems.append(
                f"config.json: auto_map lacks {missing} (has {sorted(auto_map)}). Save with the package imported "
                "(`import modeling_posattn` registers the Auto classes) so that save_pretrained writes them all."
            )
        code_needed |= _code_files_needed(folder, auto_map, problems, "config.json")

    processor_path = folder / "preprocessor_config.json"
    if "preprocessor_config.json" not in names:
        problems.append(
            "preprocessor_config.json is missing: save the processor into the folder (`processor.save_pretrained(dir)`, "
            "or pass it to Trainer as `processing_class`), users need it to build inputs."
        )
    else:
        try:
            processor = json.loads(processor_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            problems.append(f"preprocessor_config.json does not parse: {error}.")
            processor = {}
        auto_map = processor.get("auto_map") or {}
        missing = [name for name in REQUIRED_PROCESSOR_AUTO_CLASSES if name not in auto_map]
        if processor and missing:
            problems.append(f"preprocessor_config.json: auto_map lacks {missing} (has {sorted(auto_map)}).")
        code_needed |= _code_files_needed(folder, auto_map, problems, "preprocessor_config.json")

    # Every other config the Auto classes read (processor_config.json, which AutoProcessor reads before
    # preprocessor_config.json, tokenizer_config.json, ...) may carry an auto_map too: no foreign code there either.
    for name in sorted(names):
        if name in ("config.json", "preprocessor_config.json") or not Path(name).name.endswith("config.json"):
            continue
        try:
            other = json.loads((folder / name).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            problems.append(f"{name} does not parse: {error}.")
            continue
        if isinstance(other, dict) and other.get("auto_map") is not None:
            code_needed |= _code_files_needed(folder, other["auto_map"], problems, name)

    for name in sorted(code_needed):
        if name not in names:
            problems.append(f"{name} is needed by auto_map but is excluded from the upload.")
            continue
        source = (folder / name).read_text(encoding="utf-8")
        if ABSOLUTE_PACKAGE_IMPORT.search(source):
            problems.append(f"{name} imports `modeling_posattn` absolutely: users without the package cannot load it.")

    weights = [name for name in names if name.endswith(".safetensors")]
    if not weights:
        problems.append("No *.safetensors weights: save the model with `save_pretrained` (safetensors by default).")
    else:
        problems.extend(_check_safetensors(folder, names, weights))

    if "README.md" not in names:
        problems.append(
            "README.md (the model card) is missing: write it with `modeling_posattn.toolkit.card.write_model_card`."
        )
    else:
        from .card_validation import validate_model_card

        try:
            validate_model_card(folder / "README.md")
        except ValueError as error:
            problems.append(f"README.md is not a valid PosAttn model card: {error}")
    return problems


def _check_safetensors(folder: Path, names: set[str], weights: list[str]) -> list[str]:
    from safetensors import safe_open

    problems = []
    index_name = "model.safetensors.index.json"
    if index_name in names:
        index = json.loads((folder / index_name).read_text(encoding="utf-8"))
        shards = set(index.get("weight_map", {}).values())
        problems.extend(f"{index_name} names shard {shard}, which is missing." for shard in sorted(shards - names))
    elif "model.safetensors" not in names:
        problems.append(f"No model.safetensors (found {sorted(weights)}).")
    for name in weights:
        try:
            with safe_open(str(folder / name), framework="pt") as handle:
                handle.keys()
        except Exception as error:  # a Git LFS pointer, a truncated file...
            problems.append(f"{name} is not a readable safetensors file: {error}")
    return problems


def stage(folder: str | Path, destination: str | Path, repo_id: str, exclude: tuple[str, ...] = DEFAULT_EXCLUDE) -> list[str]:
    """Copy what would be uploaded into `destination` (created; must be empty) and return the relative paths."""
    from .card import USAGE_REPO_LINE

    folder, destination = Path(folder), Path(destination)
    if destination.exists() and any(destination.iterdir()):
        raise CheckpointError(f"{destination} is not empty: give an empty or new folder.")
    if destination.resolve().is_relative_to(folder.resolve()):
        raise CheckpointError(f"{destination} lies inside the checkpoint folder {folder}.")
    destination.mkdir(parents=True, exist_ok=True)
    copied = []
    for relative in staged_files(folder, exclude):
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / relative, target)
        copied.append(str(relative))
    card = destination / "README.md"
    if card.is_file():
        card.write_text(USAGE_REPO_LINE.sub(f'repo = "{repo_id}"', card.read_text(encoding="utf-8")), encoding="utf-8")
    return copied


def publish(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    dry_run: str | Path | None = None,
    token: str | None = None,
    exclude: tuple[str, ...] = (),
) -> dict:
    """Check `folder`, stage it and upload it (or, with `dry_run`, write the staged copy there). Returns a summary."""
    folder = Path(folder)
    exclude = DEFAULT_EXCLUDE + tuple(exclude)
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise CheckpointError(f"Repository id {repo_id!r} must look like 'user-or-org/name'.")
    problems = check_checkpoint(folder, exclude)
    if problems:
        raise CheckpointError(
            f"Refusing to publish {folder}: it is not a complete, safe PosAttn checkpoint.\n- " + "\n- ".join(problems)
        )
    commit_message = commit_message or f"Upload PosAttn checkpoint from {folder.resolve().name}"
    summary = {"repo_id": repo_id, "revision": revision, "commit_message": commit_message, "private": private}
    if dry_run is not None:
        summary["files"] = stage(folder, dry_run, repo_id, exclude)
        summary["folder"] = str(Path(dry_run))
        return summary

    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="posattn-publish-") as staging:
        summary["files"] = stage(folder, staging, repo_id, exclude)
        repo_url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        repo_id = getattr(repo_url, "repo_id", None) or repo_id
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=staging,
            repo_type="model",
            revision=revision,
            commit_message=commit_message,
        )
    summary["commit"] = str(getattr(commit, "commit_url", commit))
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="posattn-publish", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="checkpoint folder (save_pretrained / Trainer.save_model output, with README.md)")
    parser.add_argument("repo_id", help="target Hub repository, 'user-or-org/name'")
    visibility = parser.add_mutually_exclusive_group()
    visibility.add_argument("--private", action="store_true", help="create the repository private")
    visibility.add_argument("--public", action="store_true", help="create the repository public (the default)")
    parser.add_argument("--revision", "--branch", dest="revision", default=None, help="branch to upload to (created if needed; default main)")
    parser.add_argument("--commit-message", default=None)
    parser.add_argument("--dry-run", metavar="DIR", default=None, help="write what would be uploaded into DIR; no network")
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the saved login)")
    parser.add_argument("--exclude", action="append", default=[], metavar="PATTERN", help="also leave out files or folders matching PATTERN")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = publish(
            args.folder,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            commit_message=args.commit_message,
            dry_run=args.dry_run,
            token=args.token,
            exclude=tuple(args.exclude),
        )
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    where = f"dry run, written to {summary['folder']}" if args.dry_run else summary.get("commit")
    print(f"{summary['repo_id']}@{summary['revision'] or 'main'}: {len(summary['files'])} files ({where})")
    for name in summary["files"]:
        print(f"  {name}")
    return 0

