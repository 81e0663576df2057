"""Recipes and model presets: JSON files in the project's `configuration/` folder, shipped inside the package.

`configuration/` is the single source. In a checkout, `modeling_posattn/toolkit/configuration` is a link to it; a built
wheel carries the files there as package data. Either way they are found with `importlib.resources`, so
`posattn-train --config natops` works from any folder.

A *recipe* is one flat JSON object holding keys of any argument group (`arguments.py`); a *model preset*
(`posattn-small.json`, `posattn-base.json`) holds `PosAttnConfig` fields.
"""

import json
import os
from importlib.resources import files
from pathlib import Path
from typing import Any

PACKAGE_FILES = files(__package__)
CONFIGURATION = PACKAGE_FILES / "configuration"
MODEL_CARD_TEMPLATE = PACKAGE_FILES / "model_card.md"

# Keys a recipe file may carry for documentation only.
RECIPE_COMMENT_KEYS = ("description", "comment")
# What a checkpoint's config.json carries that must not leak into a fresh config built from it as a preset.
CHECKPOINT_BOOKKEEPING_KEYS = (
    "architectures", "auto_map", "transformers_version", "model_type", "id2label", "label2id", "num_labels",
    "problem_type", "dtype", "torch_dtype", "_attn_implementation_autoset",
)


def bundled_names(suffix: str = ".json") -> list[str]:
    """Names of the bundled recipes and presets (file names without `suffix`)."""
    return sorted(entry.name.removesuffix(suffix) for entry in CONFIGURATION.iterdir() if entry.name.endswith(suffix))


def _read_json(resource) -> Any:
    with resource.open("r", encoding="utf-8") as handle:
        return json.load(handle)


def resolve_configuration_file(name_or_path: str | os.PathLike):
    """A file path as given, else a bundled `configuration/<name>` or `<name>.json`."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (str(name_or_path), f"{name_or_path}.json"):
        bundled = CONFIGURATION / candidate
        if bundled.is_file():
            return bundled
    raise FileNotFoundError(
        f"{str(name_or_path)!r} is neither a file nor a bundled recipe/preset; bundled: {bundled_names()}."
    )


def load_recipe(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """Read a recipe (a path, or a bundled name such as `natops`); comment keys and `_`-keys are dropped."""
    recipe = _read_json(resolve_configuration_file(name_or_path))
    if not isinstance(recipe, dict):
        raise ValueError(f"Recipe {name_or_path}: expected a JSON object, got {type(recipe).__name__}.")
    return {key: value for key, value in recipe.items() if key not in RECIPE_COMMENT_KEYS and not key.startswith("_")}


def load_model_preset(model_config: str | os.PathLike | None) -> dict[str, Any]:
    """PosAttnConfig fields of a preset: a bundled name, a JSON file, or a checkpoint folder's config.json."""
    if not model_config:
        return {}
    path = Path(model_config)
    resource = path / "config.json" if path.is_dir() else resolve_configuration_file(model_config)
    preset = _read_json(resource)
    for key in CHECKPOINT_BOOKKEEPING_KEYS:
        preset.pop(key, None)
    return preset


# What every recipe starts from (bookkeeping keys only). A `--config` recipe layers on this, not on the embedded
# default: the synthetic task's own choices (its model and batching) once leaked into every recipe that way.
BASE_RECIPE: dict[str, Any] = load_recipe("defaults")
# The embedded default of `posattn-train` with no arguments: the synthetic recipe.
DEFAULT_RECIPE: dict[str, Any] = {**BASE_RECIPE, **load_recipe("synthetic")}

__all__ = ["BASE_RECIPE", "CONFIGURATION", "DEFAULT_RECIPE", "MODEL_CARD_TEMPLATE", "bundled_names", "load_model_preset", "load_recipe"]
