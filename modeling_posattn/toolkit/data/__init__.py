"""Built-in dataset loaders. Each turns raw data into a `datasets.DatasetDict` in the processor's layout.

Layout of every split: one column per modality (a `T x input_dim` list of floats, or a list of ints; None where a
sample lacks the modality), an optional `timestamps` column (a struct mapping modality name to T times in seconds),
and `labels`. Pass rows through `PosAttnProcessor` (`dataset.map(processor, batched=True, fn_kwargs={"padding": False})`).

Checkpoints never need this subpackage: it is training-time code, so it may be nested.
"""

import importlib
from dataclasses import dataclass, field
from typing import Any

import datasets


@dataclass
class BuiltinDataset:
    """A loaded dataset plus what a model, a processor and a model card need to know about it."""

    dataset: datasets.DatasetDict
    modalities: dict[str, dict[str, Any]]
    problem_type: str  # "single_label_classification" | "regression" | "multi_label_classification"
    label_names: list[str] | None = None
    description: str = ""
    source: str = ""
    citation: str = ""
    preparation_version: str = "1"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return len(self.label_names) if self.label_names else 1


# name -> "module:function" (a module of this subpackage); modules are imported lazily so that a missing optional dependency of one loader
# never breaks the others.
BUILTIN_DATASETS: dict[str, str] = {
    "synthetic": "synthetic:load_synthetic",
    "natops": "natops:load_natops",
    "av_digits": "av_digits:load_av_digits",
    "mosi": "mosi:load_mosi",
    "uea": "uea:load_uea",
    "mixture": "mixture:load_mixture",
}


def load_builtin_dataset(name: str, **options) -> BuiltinDataset:
    """Load a built-in dataset by name (`synthetic`, `natops`, `av_digits`, `mosi`, `uea`, or `mixture` of several of
    them) with loader-specific options."""
    if name not in BUILTIN_DATASETS:
        raise ValueError(f"Unknown built-in dataset {name!r}; choose one of {sorted(BUILTIN_DATASETS)}.")
    module_name, function_name = BUILTIN_DATASETS[name].split(":")
    return getattr(importlib.import_module(f".{module_name}", __name__), function_name)(**options)


__all__ = ["BuiltinDataset", "BUILTIN_DATASETS", "load_builtin_dataset"]
