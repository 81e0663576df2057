"""The training-time toolkit of posattn: everything a checkpoint does not ship.

The flat files of `modeling_posattn/` (configuration, modeling, positional encodings, processing) are the remote code
a checkpoint carries; this subpackage holds what trains, evaluates, documents and publishes them, one job per module:

- `arguments`, `recipes`, `cli`: the `posattn-train` command line, its recipes and model presets (package data);
- `data/`, `data_sources`: the built-in loaders, local and Hub datasets, and the splits;
- `builders`, `evaluation`, `run`: processor, model, metrics and the Trainer run (one seed or several);
- `card*`: the model card; `publish`: `posattn-publish`;
- `metrics/`: the project's local `evaluate` modules;
- `seed_reference`, `seed_baseline`: the seed document's code, kept as a baseline for studies.
"""
