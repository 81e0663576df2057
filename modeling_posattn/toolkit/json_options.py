"""JSON-valued options (`--dataset_options`, `--modalities`, `--config_overrides`): a dict from a recipe, a JSON
string, or a path to a JSON file."""

import json
import os


def parse_json_option(value, what: str):
    """A JSON option given as a dict already (from a recipe), as a JSON string, or as a path to a JSON file."""
    if value is None or isinstance(value, (dict, list)):
        return value
    text = str(value).strip()
    if not text:
        return None
    if not text.startswith(("{", "[")) and os.path.isfile(text):
        with open(text) as handle:
            return json.load(handle)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{what}: expected a JSON object or a path to a JSON file, got {value!r} ({error}).") from None


__all__ = ["parse_json_option"]
