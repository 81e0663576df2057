"""`mixture` loader: built-in datasets stacked into one (union of modalities, clashing names prefixed, None for the
other parts' modalities, source labels), pretraining on it, and its bad options."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_posattn import PosAttnConfig, PosAttnForPreTraining, PosAttnProcessor
from modeling_posattn.toolkit.data import BUILTIN_DATASETS, load_builtin_dataset
from modeling_posattn.toolkit.data._common import data_available, default_data_dir
from modeling_posattn.toolkit.recipes import load_recipe

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
from make_uea_fixtures import FIXTURES  # noqa: E402

FIXED = FIXTURES / "TinyFixed"  # 6 channels, 16 steps, train 24 / test 12
SYNTHETIC = {"num_train": 12, "num_validation": 6, "num_test": 6}
UEA = {"path": str(FIXED), "modalities": {"audio": [0, 1], "series": [2, 3, 4]}, "sampling_rate": 10}


def mixture(**parts):
    return load_builtin_dataset("mixture", datasets=parts)


@pytest.fixture(scope="module")
def mixed():
    return mixture(synthetic=SYNTHETIC, uea=UEA)


def test_registered():
    assert "mixture" in BUILTIN_DATASETS


def test_union_of_modalities_with_clashing_names_prefixed(mixed):
    # `audio` is in both parts (8 channels at 100 Hz vs 2 at 10 Hz): prefixed in both; the other names are kept.
    assert mixed.modalities == {
        "synthetic_audio": {"input_dim": 8, "sampling_rate": 100.0},
        "video": {"input_dim": 6, "sampling_rate": 25.0},
        "text": {"vocab_size": 16, "sampling_rate": None},
        "uea_audio": {"input_dim": 2, "sampling_rate": 10.0},
        "series": {"input_dim": 3, "sampling_rate": 10.0},
    }
    assert mixed.options["modality_names"]["synthetic"]["audio"] == "synthetic_audio"
    assert "synthetic's `audio` -> `synthetic_audio`" in mixed.description


def test_equal_specs_are_prefixed_too():
    # uea's `video` has synthetic's spec exactly (6 channels, 25 Hz): a clash is a clash, whatever the specs.
    data = mixture(synthetic=SYNTHETIC, uea={"path": str(FIXED), "modalities": {"video": [0, 1, 2, 3, 4, 5]}, "sampling_rate": 25})
    assert data.modalities["synthetic_video"] == data.modalities["uea_video"] == {"input_dim": 6, "sampling_rate": 25.0}
    assert list(data.modalities) == ["audio", "synthetic_video", "text", "uea_video"]


def test_rows_counts_none_and_source_labels(mixed):
    train, test = mixed.dataset["train"], mixed.dataset["test"]
    assert list(mixed.dataset) == ["train", "test"]  # only synthetic has a validation split: left out
    assert (len(train), len(test)) == (12 + 24, 6 + 12)
    assert mixed.options["rows"] == {"train": {"synthetic": 12, "uea": 24}, "test": {"synthetic": 6, "uea": 12}}
    assert train.column_names == [*mixed.modalities, "timestamps", "labels"]
    assert sorted(train.features["timestamps"]) == sorted(mixed.modalities)
    assert mixed.label_names == ["synthetic", "uea"] and train.features["labels"].names == ["synthetic", "uea"]
    assert train["labels"] == [0] * 12 + [1] * 24
    synthetic, uea = train[0], train[12]
    assert np.asarray(synthetic["synthetic_audio"]).shape[1] == 8 and len(synthetic["text"]) >= 3
    assert synthetic["uea_audio"] is None and synthetic["series"] is None
    assert all(value is None for value in synthetic["timestamps"].values())  # synthetic has no timestamps column
    assert uea["synthetic_audio"] is None and uea["video"] is None and uea["text"] is None
    assert np.asarray(uea["uea_audio"]).shape == (16, 2) and np.asarray(uea["series"]).shape == (16, 3)
    np.testing.assert_allclose(uea["timestamps"]["series"], np.arange(16) / 10.0)
    assert uea["timestamps"]["synthetic_audio"] is None
    # the rows are the parts' rows, unchanged
    part = load_builtin_dataset("uea", **UEA).dataset["train"][0]
    np.testing.assert_array_equal(uea["series"], part["series"])
    for text in ("synthetic 12, uea 24 (total 36)", "Labels are the source dataset",
                 "synthetic's `validation` split (6 rows) left out"):
        assert text in mixed.description


def test_processed_mixed_batch_gives_a_finite_pretraining_loss(mixed):
    train = mixed.dataset["train"]
    processor = PosAttnProcessor(modalities=mixed.modalities).fit(train)
    assert set(processor.normalization) == {"synthetic_audio", "video", "uea_audio", "series"}  # each on its own rows
    rows = train.select([0, 1, 12, 13, 20])  # synthetic and uea rows in one batch
    encoded = rows.map(processor, batched=True, fn_kwargs={"padding": False}, remove_columns=rows.column_names)
    batch = processor.pad([encoded[i] for i in range(len(encoded))], return_tensors="pt")
    names = list(mixed.modalities)
    present = [sorted(set(ids[mask.bool()].tolist())) for ids, mask in zip(batch["modality_ids"], batch["attention_mask"])]
    assert present == [[0, 1, 2], [0, 1, 2], [3, 4], [3, 4], [3, 4]], present  # a synthetic row has only its modalities, a uea row only its own
    torch.manual_seed(0)
    config = PosAttnConfig(
        modalities=mixed.modalities, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        relative_position_encoding="time_rope", absolute_position_encoding="none", mask_mode="time_aligned",
    )
    model = PosAttnForPreTraining(config)
    output = model(**{key: value for key, value in batch.items() if key != "labels"})
    assert torch.isfinite(output.loss) and torch.isfinite(output.modality_losses).all()
    assert (output.masked_token_counts > 0).sum() >= 2, dict(zip(names, output.masked_token_counts.tolist()))
    output.loss.backward()


def test_pretraining_end_to_end_on_a_mixture(tmp_path):
    """posattn-pretrain on a mixture: the processor is fitted on the mixed train split, the card names the parts."""
    from modeling_posattn.toolkit.pretrain import run_pretraining

    options = {"datasets": {"synthetic": SYNTHETIC, "uea": UEA}}
    metrics = run_pretraining(argv=[
        "--dataset_name", "mixture", "--dataset_options", json.dumps(options), "--output_dir", str(tmp_path / "run"),
        "--config_overrides", json.dumps({"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}),
        "--validation_split_percentage", "0.25", "--num_train_epochs", "1", "--per_device_train_batch_size", "8",
        "--report_to", "none", "--disable_tqdm", "true", "--mask_mode", "time_aligned", "--torch_num_threads", "1",
    ])
    assert np.isfinite(metrics["eval_loss"])
    assert {"eval_loss_synthetic_audio", "eval_loss_series", "eval_loss_uea_audio"} <= set(metrics)
    card = (tmp_path / "run" / "README.md").read_text()
    assert "A mixture of 2 datasets (synthetic, uea)" in card and "No test data was used" in card


def test_bad_options():
    with pytest.raises(ValueError, match="non-empty mapping"):
        load_builtin_dataset("mixture", datasets={})
    with pytest.raises(ValueError, match="non-empty mapping"):
        load_builtin_dataset("mixture")
    with pytest.raises(ValueError, match=r"Unknown built-in dataset 'nope'.*synthetic"):
        mixture(synthetic={}, nope={})
    with pytest.raises(ValueError, match="`mixture` cannot be a part of a mixture"):
        mixture(mixture={"datasets": {"synthetic": {}}})
    with pytest.raises(ValueError, match="must be a mapping"):
        mixture(synthetic=[1, 2])
    # synthetic's `audio` is prefixed because uea has one too, and uea already has a `synthetic_audio`
    with pytest.raises(ValueError, match="'synthetic_audio'.*already taken"):
        mixture(synthetic=SYNTHETIC, uea={"path": str(FIXED), "modalities": {"synthetic_audio": [0], "audio": [1]}})


needs_all_data = pytest.mark.skipif(
    not (
        data_available(None, "natops", ("NATOPS_TRAIN.ts", "NATOPS_TEST.ts")) and data_available(None, "fsdd/recordings")
        and data_available(None, "mnist", ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))
    ),
    reason=f"needs NATOPS, FSDD and MNIST in {default_data_dir()} (or set POSATTN_DATA_DIR)",
)


@needs_all_data
def test_pretrain_all_recipe_mixture_on_the_real_data():
    """The modalities of configuration/pretrain_all.json's mixture (the parts subsampled for speed)."""
    recipe = load_recipe("pretrain_all")
    assert recipe["dataset_name"] == "mixture" and recipe["relative_position_encoding"] == "time_rope"
    parts = json.loads(json.dumps(recipe["dataset_options"]["datasets"]))
    parts["av_digits"]["max_clips_per_split"] = 20
    parts["synthetic"].update(SYNTHETIC)
    data = load_builtin_dataset("mixture", datasets=parts)
    assert list(data.modalities) == ["series", "av_digits_audio", "image", "synthetic_audio", "video", "text"]
    assert data.modalities["series"] == {"input_dim": 24, "sampling_rate": 25.0}
    assert data.options["rows"]["train"] == {"uea": 180, "av_digits": 20, "synthetic": 12}
    assert "NATOPS" in data.description and "AV-digits" in data.description and "SYNTHETIC" in data.description
