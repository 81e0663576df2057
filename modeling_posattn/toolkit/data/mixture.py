"""A mixture of built-in datasets: their rows stacked into one dataset, for pretraining on all the data there is.

```bash
posattn-pretrain --dataset_name mixture \\
    --dataset_options '{"datasets": {"uea": {"path": "natops", "sampling_rate": 25}, "av_digits": {}, "synthetic": {}}}'
```

Each entry of `datasets` names a built-in loader (`load_builtin_dataset`) and that loader's options; every part is
loaded as its loader returns it, and the `train` splits (and the `test` splits, and `validation` where every part has
one) are concatenated in the order of the mapping.

Modalities are the union of the parts', in order (first part's first). A name used by two or more parts is *prefixed
in every part that uses it*, `<dataset>_<modality>` (`audio` of `synthetic` and `audio` of `av_digits` become
`synthetic_audio` and `av_digits_audio`), whether or not the specs are equal: names depend on names only, and two
streams that happen to share a width and a rate (say two 24-channel motion sets) keep their own normalisation, stem and
mask embedding. Names used by one part only are kept as they are. Each modality's spec (with any `stem` in it) is its
loader's; `--stem` / a recipe's `stem` later writes one stem into every feature modality.

A row has None for the modalities of the other parts, and its `timestamps` struct holds None for them (every field is
None for a part without a `timestamps` column: the processor then fills its times from the rates).

`labels` is a ClassLabel over the parts' names: the dataset a row came from, not the parts' own labels (they are
dropped; they are not comparable across datasets). Pretraining drops labels anyway; the source label keeps a
validation carve stratified by dataset. Columns a loader returns besides its modalities, `timestamps` and `labels`
(`synthetic`'s `return_onsets` columns) are dropped.

A loader may appear once (the mapping is keyed by loader name); `mixture` inside `mixture` is refused.
"""

from collections.abc import Mapping
from typing import Any

import datasets
import pyarrow as pa

from . import BUILTIN_DATASETS, BuiltinDataset, load_builtin_dataset

MIXTURE_PREPARATION_VERSION = "1"
MIXTURE_NAME = "mixture"
RESERVED_COLUMNS = ("timestamps", "labels")
# Splits concatenated when every part has them (`validation` only then: a partial one would validate on some parts).
MIXTURE_SPLITS = ("train", "validation", "test")


def _check_options(parts) -> dict[str, dict[str, Any]]:
    choices = sorted(name for name in BUILTIN_DATASETS if name != MIXTURE_NAME)
    if not isinstance(parts, Mapping) or not parts:
        raise ValueError(
            "The mixture loader needs `datasets`, a non-empty mapping {built-in dataset name: its options}, e.g. "
            f'{{"datasets": {{"synthetic": {{}}, "uea": {{"path": "natops"}}}}}}; got {parts!r}. Choices: {choices}.'
        )
    checked = {}
    for name, options in parts.items():
        if name == MIXTURE_NAME:
            raise ValueError(f"`mixture` cannot be a part of a mixture; list its datasets directly (choices: {choices}).")
        if name not in BUILTIN_DATASETS:
            raise ValueError(f"Unknown built-in dataset {name!r} in the mixture's `datasets`; choose from {choices}.")
        if options is None:
            options = {}
        if not isinstance(options, Mapping):
            raise ValueError(f"Options of mixture part {name!r} must be a mapping of that loader's options, got {options!r}.")
        checked[name] = dict(options)
    return checked


def mixture_modality_names(parts: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """`{part: {its modality: the mixture's name}}`: a name used by two or more parts becomes `<part>_<name>` in each."""
    users: dict[str, int] = {}
    for modalities in parts.values():
        for name in modalities:
            users[name] = users.get(name, 0) + 1
    renamed = {
        part: {name: f"{part}_{name}" if users[name] > 1 else name for name in modalities}
        for part, modalities in parts.items()
    }
    seen: dict[str, str] = {}
    for part, names in renamed.items():
        for original, name in names.items():
            if name in seen or name in RESERVED_COLUMNS:
                raise ValueError(
                    f"Mixture modality name {name!r} (from {part!r}'s {original!r}) is already taken"
                    + (f" by {seen[name]!r}" if name in seen else " (a reserved column)")
                    + "; rename a modality with that loader's options."
                )
            seen[name] = f"{part}'s {original!r}"
    return renamed


def _part_table(split: datasets.Dataset, part_index: int, names: dict[str, str], features: datasets.Features) -> pa.Table:
    """One part's split as an Arrow table with the mixture's columns (its modalities renamed, the others null)."""
    table = split.with_format("arrow")[:]  # respects an indices mapping (a `select` by the loader)
    rows = table.num_rows
    own = {names[column]: table.column(column) for column in table.column_names if column in names}
    times = table.column("timestamps").combine_chunks() if "timestamps" in table.column_names else None
    time_fields = dict(zip((f.name for f in times.type), times.flatten())) if times is not None else {}
    columns = {}
    for name, feature in features.items():
        if name == "timestamps":
            fields = {}
            for field, field_feature in feature.items():
                original = next((key for key, value in names.items() if value == field), None)
                if original in time_fields:
                    values = time_fields[original]
                else:
                    values = pa.nulls(rows, type=datasets.Features({field: field_feature}).arrow_schema.field(field).type)
                fields[field] = values
            columns[name] = pa.StructArray.from_arrays(list(fields.values()), names=list(fields))
        elif name == "labels":
            columns[name] = pa.array([part_index] * rows, type=pa.int64())
        elif name in own:
            columns[name] = own[name]
        else:
            columns[name] = pa.nulls(rows, type=features.arrow_schema.field(name).type)
    return pa.table(columns).cast(features.arrow_schema)


def load_mixture(datasets: Mapping[str, Mapping[str, Any]] | None = None) -> BuiltinDataset:  # noqa: A002 (the option's name)
    """Built-in datasets stacked into one (module docstring): modalities united, clashing names prefixed, source labels.

    Args:
        datasets: `{built-in dataset name: that loader's options}`, e.g.
            `{"uea": {"path": "natops"}, "av_digits": {}, "synthetic": {}}`.

    Raises:
        ValueError: an empty or missing `datasets` mapping, an unknown dataset name (the message names it and the
            choices), `mixture` inside a mixture, a part whose options are not a mapping, or a prefixed name that
            collides with another part's modality.
    """
    return _load_mixture(datasets)


def _load_mixture(parts_options) -> BuiltinDataset:
    parts_options = _check_options(parts_options)
    parts = {name: load_builtin_dataset(name, **options) for name, options in parts_options.items()}
    names = mixture_modality_names({part: data.modalities for part, data in parts.items()})

    modalities, modality_features, time_features = {}, {}, {}
    for part, data in parts.items():
        train_features = data.dataset["train"].features
        time_feature = train_features.get("timestamps") or {}
        for original, name in names[part].items():
            modalities[name] = dict(data.modalities[original])
            modality_features[name] = train_features[original]
            time_features[name] = time_feature.get(original, datasets.List(datasets.Value("float64")))
    part_names = list(parts)
    features = datasets.Features(
        {**modality_features, "timestamps": time_features, "labels": datasets.ClassLabel(names=part_names)}
    )

    splits, counts = {}, {}
    for split in MIXTURE_SPLITS:
        having = [part for part, data in parts.items() if split in data.dataset]
        if not having or (split == "validation" and len(having) < len(parts)):
            continue
        tables = [
            _part_table(parts[part].dataset[split], part_names.index(part), names[part], features) for part in having
        ]
        splits[split] = datasets.concatenate_datasets(
            [datasets.Dataset(table, info=datasets.DatasetInfo(features=features)) for table in tables]
        )
        counts[split] = {part: len(parts[part].dataset[split]) for part in having}

    dropped = [
        f"{part}'s `{split}` split ({len(data.dataset[split])} rows)"
        for split in MIXTURE_SPLITS if split not in splits for part, data in parts.items() if split in data.dataset
    ]
    renamed = [f"{part}'s `{old}` -> `{new}`" for part, mapping in names.items() for old, new in mapping.items() if old != new]
    description = (
        f"A mixture of {len(parts)} datasets ({', '.join(part_names)}), rows stacked, each row from one of them: "
        + "; ".join(
            f"{split} " + ", ".join(f"{part} {size}" for part, size in sizes.items())
            + f" (total {sum(sizes.values())})" for split, sizes in counts.items()
        )
        + ". Modalities are the union"
        + (f", clashing names prefixed by their dataset ({', '.join(renamed)})" if renamed else "")
        + (f"; {', '.join(dropped)} left out (not every part has one)" if dropped else "")
        + "; a row has only its own dataset's modalities. Labels are the source dataset, not the parts' classes. Parts: "
        + " ".join(f"[{part}] {data.description.strip()}" for part, data in parts.items())
    )
    return BuiltinDataset(
        dataset=datasets.DatasetDict(splits),
        modalities=modalities,
        problem_type="single_label_classification",
        label_names=part_names,
        description=description,
        source="; ".join(f"{part}: {data.source}" for part, data in parts.items() if data.source),
        citation="\n".join(dict.fromkeys(data.citation.strip() for data in parts.values() if data.citation.strip())),
        preparation_version=MIXTURE_PREPARATION_VERSION + "+" + "+".join(
            f"{part}-{data.preparation_version}" for part, data in parts.items()
        ),
        options={
            "datasets": {part: data.options for part, data in parts.items()},
            "modality_names": names,
            "rows": counts,
        },
    )


__all__ = ["load_mixture", "mixture_modality_names", "MIXTURE_PREPARATION_VERSION"]
