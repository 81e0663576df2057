"""Training: the synthetic default dataset, the stock Trainer on processor-mapped datasets, scripts/train.py end to end."""

import dataclasses
import json
import os
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import (  # noqa: E402
    AutoFeatureExtractor,
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    EvalPrediction,
    Trainer,
    TrainingArguments,
)

import modeling_posattn  # noqa: E402,F401  (registers the Auto classes)
from modeling_posattn import PosAttnConfig, PosAttnForSequenceClassification, PosAttnProcessor  # noqa: E402
from modeling_posattn.toolkit.data import load_builtin_dataset  # noqa: E402
from modeling_posattn.toolkit.data.synthetic import DELTA_RANGES, LABEL_NAMES, SyntheticTimingTask, load_synthetic  # noqa: E402
from modeling_posattn.toolkit.arguments import DataArguments  # noqa: E402
from modeling_posattn.toolkit.cli import parse_args  # noqa: E402
from modeling_posattn.toolkit.data_sources import load_data, prepare_splits  # noqa: E402
from modeling_posattn.toolkit.evaluation import build_compute_metrics  # noqa: E402
from modeling_posattn.toolkit.arguments import ARGUMENT_CLASSES  # noqa: E402
from modeling_posattn.toolkit.recipes import BASE_RECIPE, DEFAULT_RECIPE, load_model_preset, load_recipe  # noqa: E402

from conftest import denormals_flushed  # noqa: E402

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
    trainer = Trainer(model=model, args=args, train_dataset=encoded, data_collator=DataCollatorWithPadding(processor))
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


def test_recipes_and_presets_are_package_data_found_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the checkout: found through importlib.resources, not the current folder
    assert {**BASE_RECIPE, **load_recipe(ROOT / "configuration" / "synthetic.json")} == DEFAULT_RECIPE
    assert load_recipe("synthetic") == load_recipe(ROOT / "configuration" / "synthetic.json")
    for name in ("posattn-small", "posattn-base"):
        assert load_model_preset(name) == json.loads((ROOT / "configuration" / f"{name}.json").read_text())
    for recipe in ("synthetic", "natops", "av_digits"):
        model_args, data_args, training_args, seeds = parse_args(["--config", recipe])
        assert data_args.dataset_name == recipe and seeds is None
    with pytest.raises(FileNotFoundError, match="bundled"):
        load_recipe("no-such-recipe")


def test_every_bundled_recipe_parses():
    """Every training and pretraining recipe in configuration/ (not the presets, the ablation studies or the accelerate
    files) names only known arguments and parses."""
    names = sorted(path.stem for path in (ROOT / "configuration").glob("*.json")
                   if not path.stem.startswith(("ablation_", "posattn-")) and path.stem != "defaults")
    assert {"synthetic", "uea", "av_digits", "pretrain_natops", "pretrain_av_digits", "pretrain_all"} <= set(names)
    for name in names:
        _, data_args, _, _ = parse_args(["--config", name])
        assert data_args.dataset_name, name


@pytest.mark.parametrize("name", ["uea", "natops", "av_digits", "pretrain_natops"])
def test_a_recipe_does_not_inherit_the_embedded_defaults_choices(name):
    """A `--config` recipe is the base plus its own keys: every key only the synthetic default sets keeps its argument
    default. (synthetic.json's initializer_range 0.1, unit_scale_embeddings off and group_by_length once reached every
    recipe this way, and changed the model of every study run after it.)"""
    recipe = load_recipe(name)
    parsed = parse_args(["--config", name])[:3]
    synthetic_only = set(DEFAULT_RECIPE) - set(recipe) - set(BASE_RECIPE)
    assert {"initializer_range", "config_overrides", "train_sampling_strategy"} <= synthetic_only
    for key in synthetic_only:
        field = next(f for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls) if f.name == key)
        got = next(getattr(group, key) for group in parsed if hasattr(group, key))
        assert str(getattr(got, "value", got)) == str(field.default), f"{name}: {key} = {got!r} came from the synthetic default"


def test_parse_args_precedence_and_defaults():
    model_args, data_args, training_args, _ = parse_args([])
    assert data_args.dataset_name == "synthetic" and training_args.output_dir == os.path.join("outputs", "synthetic-default")
    assert model_args.absolute_position_encoding == DEFAULT_RECIPE["absolute_position_encoding"]
    assert training_args.learning_rate == DEFAULT_RECIPE["learning_rate"]
    model_args, data_args, training_args, _ = parse_args(
        ["--config", "configuration/natops.json", "--learning_rate", "0.01", "--absolute_position_encoding", "dynamic"],
        overrides={"seed": 5},
    )
    assert training_args.learning_rate == 0.01 and training_args.seed == 5
    assert model_args.absolute_position_encoding == "dynamic" and training_args.output_dir == "outputs/natops"
    assert parse_args(["--dataset_name", "natops"])[2].output_dir == os.path.join("outputs", "natops-default")
    with pytest.raises(ValueError, match="Unknown recipe/override key"):
        parse_args([], overrides={"not_a_field": 1})


def test_seed_lists_and_recipe_dataset_options_stay_with_their_dataset():
    *_, seeds = parse_args(["--seed", "1,2,3"])
    assert seeds == [1, 2, 3]
    assert parse_args(["--seed", "4"])[2].seed == 4 and parse_args(["--seed", "4"])[3] is None
    with pytest.raises(ValueError, match="--seed"):
        parse_args(["--seed", "1,x"])
    natops = load_recipe("natops")
    assert natops["dataset_options"]  # the recipe's loader options...
    _, data_args, _, _ = parse_args(["--config", "natops"])
    assert data_args.dataset_options == natops["dataset_options"]
    _, data_args, _, _ = parse_args(["--config", "natops", "--dataset_name", "train.parquet"])
    assert data_args.dataset_options is None  # ...do not follow the run to another dataset
    _, data_args, _, _ = parse_args(["--config", "natops", "--dataset_name", "x.parquet", "--dataset_options", "{}"])
    assert data_args.dataset_options == "{}"


def test_help_is_short_and_starts_with_the_recipe(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    short = capsys.readouterr().out
    assert short.index("--config") < short.index("--model_config") < short.index("--dataset_name") < short.index("--learning_rate")
    assert "--help_all" in short and "--adam_beta1" not in short and len(short.splitlines()) < 260
    # a training flag's default is its field's (or the recipe's), not argparse's None
    flush_help = " ".join(short[short.index("--flush_denormal"):short.index("--use_cpu")].split())
    assert flush_help.endswith("(default: True)")
    with pytest.raises(SystemExit):
        parse_args(["--help_all"])
    assert "--adam_beta1" in capsys.readouterr().out


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
    with pytest.raises(SystemExit) as exit_status:
        runpy.run_path(str(ROOT / "scripts" / "train.py"), run_name="__main__")
    assert exit_status.value.code == 0
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
    card = (output_dir / "README.md").read_text()
    assert "synthetic" in card.lower() and f'repo = "{output_dir.resolve()}"' in card  # no placeholder in the snippet

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
    from modeling_posattn.toolkit.run import run_training

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


QUICK = {"dataset_options": TINY, "num_train_epochs": 1, "report_to": "none", "disable_tqdm": True,
         "save_strategy": "no", "eval_strategy": "no", "load_best_model_at_end": False}


@pytest.mark.skipif(not torch.set_flush_denormal(False), reason="this CPU cannot flush denormals")
def test_training_flushes_denormals_unless_told_not_to(tmp_path):
    from modeling_posattn.toolkit.run import run_training

    run_training(overrides={**QUICK, "output_dir": str(tmp_path / "kept"), "flush_denormal": False}, write_model_card=False)
    assert not denormals_flushed()
    run_training(overrides={**QUICK, "output_dir": str(tmp_path / "flushed")}, write_model_card=False)
    assert denormals_flushed()


FLUSHED_IN_EVERY_THREAD = """
import json, sys, torch
from modeling_posattn.toolkit.run import run_training
run_training(overrides={**json.loads(sys.argv[1]), "torch_num_threads": 2}, write_model_card=False)
products = torch.full((4_000_000,), 1e-39) * 1.0  # split between both intra-op threads
print(json.dumps({"threads": torch.get_num_threads(), "flushed": bool((products == 0).all())}))
"""


@pytest.mark.skipif(not torch.set_flush_denormal(False), reason="this CPU cannot flush denormals")
def test_a_training_process_flushes_denormals_in_its_worker_threads_too(tmp_path):
    """A thread copies the mode when it starts, so the run sets it before torch's thread pool exists: a fresh process
    that trains on two threads flushes in both."""
    import subprocess

    overrides = {**QUICK, "output_dir": str(tmp_path / "run")}
    result = subprocess.run([sys.executable, "-c", FLUSHED_IN_EVERY_THREAD, json.dumps(overrides)], capture_output=True,
                            text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"threads": 2, "flushed": True}


def test_an_earlier_run_is_never_overwritten_silently(tmp_path):
    from modeling_posattn.toolkit.run import run_training

    run = tmp_path / "run"
    run_training(overrides={**QUICK, "output_dir": str(run)}, write_model_card=False)
    with pytest.raises(ValueError, match="already holds a run.*--overwrite_output_dir"):
        run_training(overrides={**QUICK, "output_dir": str(run)}, write_model_card=False)
    run_training(overrides={**QUICK, "output_dir": str(run), "overwrite_output_dir": True}, write_model_card=False)


def test_several_seeds_write_a_mean_and_std(tmp_path, capsys):
    from modeling_posattn.toolkit.cli import main

    assert main(["--output_dir", str(tmp_path / "seeds"), "--seed", "1,2", "--dataset_options", json.dumps(TINY),
                 "--num_train_epochs", "1", "--report_to", "none", "--save_strategy", "no", "--eval_strategy", "no",
                 "--load_best_model_at_end", "false", "--disable_tqdm", "true"]) == 0
    summary = json.loads((tmp_path / "seeds" / "seeds_summary.json").read_text())
    assert summary["seeds"] == [1, 2] and summary["summary"]["test_accuracy"]["n"] == 2
    accuracies = [summary["runs"][str(seed)]["test_accuracy"] for seed in (1, 2)]
    assert summary["summary"]["test_accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    assert (tmp_path / "seeds" / "seed-1" / "test_results.json").is_file()
    assert "test_accuracy:" in capsys.readouterr().out


def test_local_files_with_and_without_a_test_split(tmp_path, capsys):
    from modeling_posattn.toolkit.run import run_training

    data = load_synthetic(**TINY)
    for split in ("train", "test"):
        data.dataset[split].to_parquet(str(tmp_path / f"{split}.parquet"))
    local = {"dataset_name": "parquet", "modalities": json.dumps(data.modalities), "num_train_epochs": 1,
             "report_to": "none", "disable_tqdm": True, "save_strategy": "no", "load_best_model_at_end": False}
    files = {"train": str(tmp_path / "train.parquet"), "test": str(tmp_path / "test.parquet")}
    metrics = run_training(overrides={**local, "output_dir": str(tmp_path / "a"), "dataset_options": {"data_files": files}},
                           write_model_card=False)
    assert metrics["test_samples"] == len(data.dataset["test"])
    metrics = run_training(overrides={**local, "dataset_name": str(tmp_path / "train.parquet"),
                                      "output_dir": str(tmp_path / "b")}, write_model_card=False)
    assert not any(key.startswith("test_") for key in metrics)
    assert "No test split" in capsys.readouterr().out


def test_fixed_budget_without_validation_keeps_the_last_weights(tmp_path):
    from modeling_posattn.toolkit.run import run_training

    no_validation = {**TINY, "num_validation": 0}
    metrics = run_training(overrides={**QUICK, "dataset_options": no_validation, "output_dir": str(tmp_path / "fixed"),
                                      "validation_split_percentage": 0, "eval_strategy": "epoch"},
                           write_model_card=False)
    assert metrics["train_samples"] == TINY["num_train"] and "test_accuracy" in metrics  # every training row trains
    assert not any(key.startswith("eval_") for key in metrics)


def test_recipe_pieces_stem_augmentation_and_weight_averaging(tmp_path):
    """`--stem`, `--augmentation` and `--weight_averaging_decay` reach the processor, the model and Trainer."""
    from modeling_posattn.toolkit.run import run_training

    metrics = run_training(overrides={**QUICK, "output_dir": str(tmp_path / "recipe"), "num_train_epochs": 2,
                                      "stem": '{"type": "conv", "kernel_size": 3, "stride": 2}',
                                      "augmentation": '{"jitter": 0.03, "scaling": 0.1, "time_warp": 0.2, "window_slice": 0.9}',
                                      "weight_averaging_decay": 0.9, "label_smoothing_factor": 0.1},
                           write_model_card=False)
    assert "test_accuracy" in metrics
    config = json.loads((tmp_path / "recipe" / "config.json").read_text())
    feature_specs = [spec for spec in config["modalities"].values() if spec.get("input_dim")]
    assert feature_specs and all(spec["stem"] == {"type": "conv", "kernel_size": 3, "stride": 2} for spec in feature_specs)
    with pytest.raises(ValueError, match="load_best_model_at_end false"):
        run_training(overrides={**QUICK, "output_dir": str(tmp_path / "bad"), "weight_averaging_decay": 0.9,
                                "load_best_model_at_end": True, "eval_strategy": "epoch", "save_strategy": "epoch"},
                     write_model_card=False)
