"""Training: the synthetic default dataset, the stock Trainer on processor-mapped datasets, scripts/train.py end to end."""

import json
import os
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification, EvalPrediction, Trainer, TrainingArguments  # noqa: E402

import modeling_posattn  # noqa: E402,F401  (registers the Auto classes)
from modeling_posattn import PosAttnConfig, PosAttnDataCollator, PosAttnForSequenceClassification, PosAttnProcessor  # noqa: E402
from modeling_posattn.data import load_builtin_dataset  # noqa: E402
from modeling_posattn.data.synthetic import DELTA_RANGES, LABEL_NAMES, SyntheticTimingTask, load_synthetic  # noqa: E402
from modeling_posattn.training import (  # noqa: E402
    DEFAULT_RECIPE,
    MODEL_PRESETS,
    DataArguments,
    build_compute_metrics,
    load_data,
    load_recipe,
    parse_args,
    prepare_splits,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = {"num_train": 48, "num_validation": 24, "num_test": 24}


# ---------------------------------------------------------------------------------------------------------------------
# The synthetic dataset
# ---------------------------------------------------------------------------------------------------------------------


def test_synthetic_is_deterministic_and_seeded():
    first, again, other = load_synthetic(**TINY), load_synthetic(**TINY), load_synthetic(**TINY, seed=1)
    for split in ("train", "validation", "test"):
        assert first.dataset[split].data.table.equals(again.dataset[split].data.table)
        assert not first.dataset[split].data.table.equals(other.dataset[split].data.table)
    # Each split has its own stream: more training rows never change the test set.
    bigger = load_synthetic(num_train=96, num_validation=24, num_test=24)
    assert bigger.dataset["test"].data.table.equals(first.dataset["test"].data.table)
    # The registry reaches it, and it says everywhere that it is synthetic.
    registered = load_builtin_dataset("synthetic", **TINY)
    assert registered.dataset["test"].data.table.equals(first.dataset["test"].data.table)
    assert "SYNTHETIC" in first.description and "synthetic" in first.source
    assert first.label_names == LABEL_NAMES and first.problem_type == "single_label_classification"
    assert first.modalities["audio"]["sampling_rate"] == 100.0 and first.modalities["video"]["sampling_rate"] == 25.0
    assert first.modalities["text"]["sampling_rate"] is None


def test_synthetic_layout_lengths_and_balance():
    data = load_synthetic(**TINY, return_onsets=True)
    train = data.dataset["train"]
    assert set(train.column_names) == {"audio", "video", "text", "labels", "audio_onset", "video_onset"}
    audio_lengths = {len(x) for x in train["audio"]}
    assert len(audio_lengths) > 10 and min(audio_lengths) >= 65 and max(audio_lengths) <= 130  # variable lengths
    assert all(len(frame) == 8 for frame in train[0]["audio"]) and all(len(frame) == 6 for frame in train[0]["video"])
    assert np.bincount(train["labels"]).tolist() == [16, 16, 16]
    # The label is a function of the relative timing of the two target events.
    for label, audio, video in zip(train["labels"], train["audio_onset"], train["video_onset"]):
        low, high = DELTA_RANGES[label]
        assert low - 1e-6 <= video - audio <= high + 1e-6
    # Without onsets the processor accepts the rows as they are.
    assert "audio_onset" not in load_synthetic(**TINY).dataset["train"].column_names


def test_swapping_the_timing_flips_the_label():
    task = SyntheticTimingTask(seed=0)
    for label in range(3):
        for trial in range(5):
            sample = task.make_sample(np.random.default_rng([trial, label]), label)
            swapped = task.make_sample(np.random.default_rng([trial, label]), label, swap=True)
            assert sample["labels"] == label
            assert swapped["labels"] == {0: 2, 1: 1, 2: 0}[label]
            assert swapped["audio_onset"] == sample["video_onset"] and swapped["video_onset"] == sample["audio_onset"]
            # Same lengths and same text: only where the events sit differs.
            assert len(swapped["audio"]) == len(sample["audio"]) and len(swapped["video"]) == len(sample["video"])
            assert swapped["text"] == sample["text"]


def test_without_position_information_the_label_is_invisible():
    """With no absolute and no relative encoding, the model is blind to order: shuffling every modality's frames
    changes nothing, so the timing label cannot be learned (it is at chance by construction)."""
    data = load_synthetic(num_train=6, num_validation=0, num_test=0)
    processor = PosAttnProcessor(modalities=data.modalities).fit(data.dataset["train"])
    rows = [data.dataset["train"][i] for i in range(6)]
    rng = np.random.default_rng(0)
    shuffled = [
        {**row, "audio": [row["audio"][i] for i in rng.permutation(len(row["audio"]))],
         "video": [row["video"][i] for i in rng.permutation(len(row["video"]))]}
        for row in rows
    ]
    config = PosAttnConfig(modalities=data.modalities, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, num_labels=3, absolute_position_encoding="none",
                           relative_position_encoding="none")
    torch.manual_seed(0)
    model = PosAttnForSequenceClassification(config).eval()
    with torch.no_grad():
        logits = model(**processor(rows, return_tensors="pt")).logits
        shuffled_logits = model(**processor(shuffled, return_tensors="pt")).logits
        torch.testing.assert_close(logits, shuffled_logits, rtol=1e-4, atol=1e-5)
        config.absolute_position_encoding = "sinusoidal"
        torch.manual_seed(0)
        positional = PosAttnForSequenceClassification(config).eval()
        differs = positional(**processor(rows, return_tensors="pt")).logits
        differs_shuffled = positional(**processor(shuffled, return_tensors="pt")).logits
    assert not torch.allclose(differs, differs_shuffled, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------------
# The stock Trainer
# ---------------------------------------------------------------------------------------------------------------------


def test_stock_trainer_on_mapped_dataset_loss_falls(tmp_path):
    data = load_synthetic(num_train=32, num_validation=0, num_test=0)
    raw = data.dataset["train"]
    processor = PosAttnProcessor(modalities=data.modalities).fit(raw)
    encoded = raw.map(processor, batched=True, fn_kwargs={"padding": False}, remove_columns=["audio", "video", "text"])
    # A column that is not a forward parameter: Trainer's default remove_unused_columns=True drops it, and the
    # collator does not need it.
    encoded = encoded.add_column("note", ["unused"] * len(encoded))
    assert set(encoded.column_names) == {"input_values", "input_ids", "modality_ids", "position_ids", "timestamps",
                                         "attention_mask", "labels", "note"}
    config = PosAttnConfig(modalities=data.modalities, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, num_labels=3, hidden_dropout_prob=0.0, initializer_range=0.1)
    torch.manual_seed(0)
    model = PosAttnForSequenceClassification(config)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, num_train_epochs=30,
                             learning_rate=3e-3, logging_steps=12, report_to="none", disable_tqdm=True, use_cpu=True,
                             save_strategy="no", seed=0)
    assert args.remove_unused_columns is True
    trainer = Trainer(model=model, args=args, train_dataset=encoded, data_collator=PosAttnDataCollator(processor))
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 10
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:2]), losses


def test_compute_metrics_handles_tuple_predictions():
    compute = build_compute_metrics("single_label_classification")
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    labels = np.array([0, 1, 2, 2])
    hidden = np.zeros((4, 5, 2))
    plain = compute(EvalPrediction(predictions=logits, label_ids=labels))
    as_tuple = compute(EvalPrediction(predictions=(logits, hidden), label_ids=labels))
    assert plain == as_tuple and plain["accuracy"] == 0.75
    regression = build_compute_metrics("regression")(EvalPrediction(predictions=(np.array([[0.5], [-1.0]]),),
                                                                    label_ids=np.array([1.0, -2.0])))
    assert regression["mae"] == 0.75 and regression["acc_2"] == 1.0


# ---------------------------------------------------------------------------------------------------------------------
# Arguments, recipes and data sources
# ---------------------------------------------------------------------------------------------------------------------


def test_recipes_and_presets_match_the_embedded_defaults():
    assert load_recipe(ROOT / "configuration" / "synthetic.json") == DEFAULT_RECIPE
    for name, preset in MODEL_PRESETS.items():
        assert json.loads((ROOT / "configuration" / f"{name}.json").read_text()) == preset
    for recipe in ("synthetic", "natops", "av_digits"):
        model_args, data_args, training_args = parse_args(["--config", f"configuration/{recipe}.json"])
        assert data_args.dataset_name == recipe
        assert training_args.load_best_model_at_end and training_args.eval_strategy == "epoch"


def test_parse_args_precedence_and_defaults():
    model_args, data_args, training_args = parse_args([])
    assert data_args.dataset_name == "synthetic" and training_args.output_dir == os.path.join("outputs", "synthetic-default")
    assert model_args.absolute_position_encoding == DEFAULT_RECIPE["absolute_position_encoding"]
    assert training_args.learning_rate == DEFAULT_RECIPE["learning_rate"]
    model_args, data_args, training_args = parse_args(
        ["--config", "configuration/natops.json", "--learning_rate", "0.01", "--absolute_position_encoding", "dynamic"],
        overrides={"seed": 5},
    )
    assert training_args.learning_rate == 0.01 and training_args.num_train_epochs == 60 and training_args.seed == 5
    assert model_args.absolute_position_encoding == "dynamic" and training_args.output_dir == "outputs/natops"
    assert parse_args(["--dataset_name", "natops"])[2].output_dir == os.path.join("outputs", "natops-default")
    with pytest.raises(ValueError, match="Unknown recipe/override key"):
        parse_args([], overrides={"not_a_field": 1})


def test_validation_carve_is_seeded_stratified_and_test_untouched():
    data = load_synthetic(num_train=60, num_validation=0, num_test=12)
    args = DataArguments(validation_split_percentage=0.2)
    splits, provenance = prepare_splits(data, args)
    again, _ = prepare_splits(data, args)
    assert len(splits["train"]) == 48 and len(splits["validation"]) == 12 and len(splits["test"]) == 12
    assert splits["validation"]["audio"] == again["validation"]["audio"]
    assert np.bincount(splits["validation"]["labels"]).tolist() == [4, 4, 4]
    assert "carved" in provenance and "seed 0" in provenance and "stratified" in provenance
    assert splits["test"].data.table.equals(data.dataset["test"].data.table)
    other, _ = prepare_splits(data, DataArguments(validation_split_percentage=0.2, validation_split_seed=1))
    assert other["validation"]["audio"] != splits["validation"]["audio"]


def test_local_files_need_modalities(tmp_path):
    data = load_synthetic(num_train=12, num_validation=0, num_test=6)
    parquet = tmp_path / "train.parquet"
    data.dataset["train"].to_parquet(str(parquet))
    data.dataset.save_to_disk(str(tmp_path / "saved"))
    spec = tmp_path / "modalities.json"
    spec.write_text(json.dumps(data.modalities))
    with pytest.raises(ValueError, match="--modalities"):
        load_data(DataArguments(dataset_name=str(parquet)))
    from_file = load_data(DataArguments(dataset_name=str(parquet), modalities=str(spec)))
    assert list(from_file.dataset) == ["train"] and from_file.label_names == LABEL_NAMES
    from_disk = load_data(DataArguments(dataset_name=str(tmp_path / "saved"), modalities=json.dumps(data.modalities)))
    assert set(from_disk.dataset) == {"train", "test"} and from_disk.num_labels == 3
    splits, provenance = prepare_splits(from_disk, DataArguments(validation_split_percentage=0.25))
    assert len(splits["validation"]) == 3 and "carved" in provenance


# ---------------------------------------------------------------------------------------------------------------------
# scripts/train.py end to end
# ---------------------------------------------------------------------------------------------------------------------


def test_train_script_end_to_end(tmp_path, monkeypatch, capsys):
    output_dir = tmp_path / "run"
    argv = [
        "scripts/train.py", "--output_dir", str(output_dir), "--dataset_options", json.dumps(TINY),
        "--num_train_epochs", "2", "--per_device_train_batch_size", "16", "--report_to", "none",
        "--disable_tqdm", "true", "--early_stopping_patience", "3",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(ROOT / "scripts" / "train.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert "| test |" in printed and "| validation |" in printed

    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "all_results.json",
                 "eval_results.json", "test_results.json", "train_results.json", "trainer_state.json"):
        assert (output_dir / name).is_file(), name
    results = json.loads((output_dir / "all_results.json").read_text())
    for key in ("train_loss", "eval_accuracy", "eval_macro_f1", "test_accuracy", "test_macro_f1", "test_loss"):
        assert key in results
    assert json.loads((output_dir / "eval_results.json").read_text())["eval_accuracy"] == results["eval_accuracy"]
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["best_metric"] is not None and state["global_step"] == 6  # 48 rows / 16 x 2 epochs
    try:
        import modeling_posattn.model_card  # noqa: F401
    except ImportError:
        pass
    else:
        card = (output_dir / "README.md").read_text()
        assert "synthetic" in card.lower()

    model = AutoModelForSequenceClassification.from_pretrained(output_dir).eval()
    processor = AutoFeatureExtractor.from_pretrained(output_dir)
    assert isinstance(model, PosAttnForSequenceClassification) and isinstance(processor, PosAttnProcessor)
    assert model.config.id2label[0] == "audio_first" and processor.normalization
    # The reloaded checkpoint reproduces the saved test accuracy.
    test = load_synthetic(**TINY).dataset["test"]
    with torch.no_grad():
        logits = model(**processor(list(test.remove_columns("labels")), return_tensors="pt")).logits
    accuracy = float((logits.argmax(-1).numpy() == np.array(test["labels"])).mean())
    assert accuracy == pytest.approx(results["test_accuracy"], abs=1e-9)


def test_run_training_programmatic_overrides(tmp_path):
    from modeling_posattn.training import run_training

    metrics = run_training(
        overrides={"output_dir": str(tmp_path / "prog"), "dataset_options": TINY, "num_train_epochs": 1,
                   "absolute_position_encoding": "none", "relative_position_encoding": "none", "report_to": "none",
                   "disable_tqdm": True, "save_strategy": "no", "eval_strategy": "no", "load_best_model_at_end": False},
        seed=3, write_model_card=False,
    )
    assert {"train_loss", "eval_accuracy", "test_accuracy"} <= set(metrics)
    config = json.loads((tmp_path / "prog" / "config.json").read_text())
    assert config["absolute_position_encoding"] == "none" and config["relative_position_encoding"] == "none"
    assert not (tmp_path / "prog" / "README.md").exists()
