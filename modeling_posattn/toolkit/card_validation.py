"""Offline checks of a model card (the Hub's own `ModelCard.validate()` needs the network)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import (
    eval_results_to_model_index,
    model_index_to_eval_results,
)


def validate_model_card(card: str | os.PathLike | ModelCard) -> ModelCard:
    """Offline checks of a card (the Hub's own `ModelCard.validate()` needs the network). Returns the parsed card.

    `card` is a `ModelCard`, a path to a README.md, or the card's text (a string starting with `---`).

    Raises `ValueError` naming the problem when: the YAML block is missing or does not parse; `ModelCardData` cannot
    read it (a malformed model-index raises here); `library_name` is not `transformers`; the `posattn` tag is missing;
    `datasets` is not a list of strings; the model-index does not survive `model_index_to_eval_results` /
    `eval_results_to_model_index`; a metric value is not a finite number; or the card does not survive a text round trip.
    """
    if isinstance(card, ModelCard):
        text = str(card)
    elif isinstance(card, os.PathLike) or (isinstance(card, str) and "\n" not in card and not card.startswith("---")):
        text = Path(card).read_text(encoding="utf-8")  # a path
    else:
        text = card
    if not text.lstrip().startswith("---"):
        raise ValueError("The model card has no YAML metadata block (it must start with '---').")
    try:
        parsed = ModelCard(text)
    except Exception as error:  # yaml errors, invalid model-index, invalid eval results
        raise ValueError(f"The model card's metadata does not parse: {error}") from error
    data = parsed.data.to_dict()
    if data.get("library_name") != "transformers":
        raise ValueError(f"`library_name` must be 'transformers', got {data.get('library_name')!r}.")
    if "posattn" not in (data.get("tags") or []):
        raise ValueError("The card's `tags` must include 'posattn'.")
    datasets = data.get("datasets")
    if not isinstance(datasets, list) or not datasets or not all(isinstance(item, str) for item in datasets):
        raise ValueError(f"`datasets` must be a non-empty list of dataset ids, got {datasets!r}.")
    if "model-index" in data:
        model_name, results = model_index_to_eval_results(data["model-index"])
        if not model_name:
            raise ValueError("The model-index has no model name.")
        for result in results:
            if isinstance(result.metric_value, bool) or not isinstance(result.metric_value, (int, float)):
                raise ValueError(f"Metric {result.metric_type!r} has a non-numeric value {result.metric_value!r}.")
            if not math.isfinite(result.metric_value):
                raise ValueError(f"Metric {result.metric_type!r} is not finite: {result.metric_value!r}.")
        if eval_results_to_model_index(model_name, results) != data["model-index"]:
            raise ValueError("The model-index does not survive a round trip through huggingface_hub's EvalResult.")
    reparsed = ModelCard(str(parsed))
    if reparsed.data.to_dict() != data or reparsed.text != parsed.text:
        raise ValueError("The model card does not survive a text round trip.")
    return parsed
