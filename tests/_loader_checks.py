"""Checks shared by the built-in dataset loader tests (`tests/test_data_*.py`): layout, encoding, and "it trains"."""

import numpy as np
import torch

from modeling_posattn import PosAttnConfig, PosAttnForSequenceClassification, PosAttnProcessor


def assert_processor_layout(bundle, with_timestamps: bool):
    """Every split has exactly one column per modality (in spec order), `timestamps` if expected, then `labels`."""
    expected = list(bundle.modalities) + (["timestamps"] if with_timestamps else []) + ["labels"]
    for name, split in bundle.dataset.items():
        assert split.column_names == expected, f"{name}: {split.column_names} != {expected}"
        if with_timestamps:
            assert sorted(split.features["timestamps"]) == sorted(bundle.modalities)
    if bundle.problem_type == "single_label_classification":
        for split in bundle.dataset.values():
            assert split.features["labels"].names == bundle.label_names


def encode(bundle, split: str = "train", n: int | None = None):
    """Fit a processor on the rows and map them through it, unpadded, as the docs describe."""
    rows = bundle.dataset[split]
    if n is not None:
        rows = rows.select(range(min(n, len(rows))))
    processor = PosAttnProcessor(modalities=bundle.modalities).fit(rows)
    encoded = rows.map(processor, batched=True, fn_kwargs={"padding": False}, remove_columns=rows.column_names)
    for key in ("modality_ids", "position_ids", "timestamps", "attention_mask", "labels"):
        assert key in encoded.column_names, key
    return processor, encoded


def assert_trains(bundle, split: str = "train", n: int = 16, steps: int = 15, lr: float = 1e-2):
    """A tiny model takes a padded batch, computes a loss, and a few optimizer steps on it reduce the loss."""
    processor, encoded = encode(bundle, split, n)
    batch = processor.pad([encoded[i] for i in range(len(encoded))], return_tensors="pt")
    torch.manual_seed(0)
    config = PosAttnConfig(
        modalities=bundle.modalities,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        hidden_dropout_prob=0.0,
        num_labels=bundle.num_labels,
        problem_type=bundle.problem_type,
    )
    model = PosAttnForSequenceClassification(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        assert loss is not None and torch.isfinite(loss), loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], f"loss did not drop: {np.round(losses, 4).tolist()}"
    return losses
