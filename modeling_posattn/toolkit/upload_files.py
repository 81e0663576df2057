"""Which files of a checkpoint folder may leave the machine: an allow-list of regular files by suffix, no symlinks,
no dotfiles, and no pickle by name or by content (used by `publish.py`)."""

from __future__ import annotations

import bz2
import fnmatch
import gzip
import lzma
import os
import re
import stat
import zipfile
from pathlib import Path

# Name parts that mark a pickle (or a format that may hold one), anywhere among the suffixes: `x.pth.tar`, `x.pkl.gz`.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz", ".tar", ".dill",
                   ".sav", ".model", ".h5", ".keras", ".msgpack")
# What a checkpoint folder may upload; everything else is left out (and listed).
ALLOWED_SUFFIXES = (".safetensors", ".json", ".py", ".md", ".txt", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")
# Training artefacts that a `Trainer` output folder holds and a published model does not need.
DEFAULT_EXCLUDE = ("training_args.bin", "checkpoint-*", "runs", "__pycache__", ".git", ".cache", "*.lock")


def _excluded(relative: Path, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(part, pattern) for part in relative.parts for pattern in patterns)


def _walk(folder: Path, exclude: tuple[str, ...]):
    """`(relative path, lstat)` of every entry under `folder` that is not excluded, without following links."""
    for root, directories, files in os.walk(folder, followlinks=False):
        for name in sorted(directories) + sorted(files):
            path = Path(root, name)
            relative = path.relative_to(folder)
            if not _excluded(relative, exclude):
                yield relative, path.lstat()
        directories[:] = [name for name in directories
                          if not _excluded(Path(root, name).relative_to(folder), exclude) and not name.startswith(".")]


def classify_files(folder: Path, exclude: tuple[str, ...] = DEFAULT_EXCLUDE) -> dict[str, list[str]]:
    """The folder's entries by fate: `upload` (allowed regular files), `left_out` (dotfiles, other kinds, special
    files), `links` (symlinks: refused, whatever they point at). Paths relative to `folder`, sorted."""
    fates: dict[str, list[str]] = {"upload": [], "left_out": [], "links": []}
    for relative, info in _walk(folder, exclude):
        name = str(relative)
        if stat.S_ISLNK(info.st_mode):
            fates["links"].append(name)
        elif stat.S_ISDIR(info.st_mode):
            if relative.name.startswith("."):
                fates["left_out"].append(name + "/")
        elif any(part.startswith(".") for part in relative.parts) or not stat.S_ISREG(info.st_mode):
            fates["left_out"].append(name)
        elif looks_like_pickle_by_name(relative.name) or not relative.name.lower().endswith(ALLOWED_SUFFIXES):
            # pickles are refused by `check_checkpoint`, never uploaded; other kinds are simply not uploaded
            fates["upload" if looks_like_pickle_by_name(relative.name) else "left_out"].append(name)
        else:
            fates["upload"].append(name)
    return {fate: sorted(names) for fate, names in fates.items()}


def staged_files(folder: Path, exclude: tuple[str, ...] = DEFAULT_EXCLUDE) -> list[Path]:
    """The files of `folder` that would be uploaded, relative to it, sorted: regular files of the allowed kinds."""
    return [Path(name) for name in classify_files(folder, exclude)["upload"]]


def looks_like_pickle_by_name(name: str) -> bool:
    return any(suffix.lower() in PICKLE_SUFFIXES for suffix in Path(name).suffixes)


PICKLE_PROTOCOL_HEADER = re.compile(rb"^\x80[\x02-\x05]")  # PROTO opcode and version: every pickle since Python 2.3
# Opcodes that import or call: what makes unpickling run code.
CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD", "EXT1", "EXT2", "EXT4"}


def _is_code_pickle(data: bytes) -> bool:
    """Whether `data` parses as a pickle (any protocol, headers or not) that imports or calls something."""
    import io
    import pickletools

    seen = set()
    try:
        for opcode, _, _ in pickletools.genops(io.BytesIO(data)):
            seen.add(opcode.name)
            if opcode.name == "STOP":
                return bool(seen & CODE_OPCODES)
    except Exception:  # not a pickle: text, json, an image...
        return False
    return False


def pickle_content(path: Path) -> str | None:
    """Why the file's bytes are (or hold) a pickle, or None. Reads at most 64 MiB."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if PICKLE_PROTOCOL_HEADER.match(head) or (
        not path.name.endswith(".safetensors") and _is_code_pickle(path.read_bytes()[: 64 * 2**20])
    ):
        return "a pickle stream"
    if head.startswith(b"\x93NUMPY"):
        header = head[10:].split(b"\n", 1)[0]
        return "a numpy array of Python objects (pickled)" if b"'|O'" in header or b"object" in header else None
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                inner = [name for name in archive.namelist() if name.endswith((".pkl", "data.pkl")) or "/data/" in name]
        except zipfile.BadZipFile:
            return None
        return f"a zip archive holding pickles ({inner[0]})" if inner else None
    for magic, opener in ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open)):
        if head.startswith(magic):
            try:
                with opener(path, "rb") as handle:
                    inner = handle.read(16 * 2**20)
            except (OSError, EOFError, lzma.LZMAError):
                return None
            return "a compressed pickle" if PICKLE_PROTOCOL_HEADER.match(inner) or _is_code_pickle(inner) else None
    return None
