"""Self-supervised pretraining (issue 11): span masks, `PosAttnForPreTraining`, its checkpoints, `posattn-pretrain`,
and fine-tuning a classifier from a pretraining checkpoint."""

import json
import math

import pytest
import torch
from conftest import MODALITIES, batch_of, denormals_flushed, random_samples, tiny_config

from modeling_posattn import PosAttnConfig, PosAttnForPreTraining, PosAttnForSequenceClassification, PosAttnModel
from modeling_posattn.masking_posattn import (
    compute_mask_positions,
    default_span_seconds,
    per_modality_span_mask,
    time_cells,
    time_aligned_span_mask,
)
from transformers import AutoModelForPreTraining

# ---------------------------------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------------------------------


def packed_layout(lengths, batch=64):
    """`batch` copies of a packed row with runs of `lengths` tokens (modality 0, 1, ...), then 5 padding tokens."""
    modality_ids = torch.cat([torch.full((n,), m) for m, n in enumerate(lengths)] + [torch.zeros(5, dtype=torch.long)])
    mask = torch.cat([torch.ones(sum(lengths), dtype=torch.bool), torch.zeros(5, dtype=torch.bool)])
    return modality_ids.expand(batch, -1).clone(), mask.expand(batch, -1).clone()


def runs(row: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-D bool tensor."""
    lengths, current = [], 0
    for value in row.tolist() + [False]:
        if value:
            current += 1
        elif current:
            lengths.append(current)
            current = 0
    return lengths


@pytest.mark.parametrize("ratio,span", [(0.15, 3), (0.5, 10), (0.4, 1)])
def test_per_modality_mask_hits_the_ratio_in_contiguous_spans_of_real_tokens(ratio, span):
    modality_ids, mask = packed_layout((300, 200))
    generator = torch.Generator().manual_seed(0)
    masked = per_modality_span_mask(modality_ids, mask, ratio, span, generator)
    assert not (masked & ~mask).any(), "padding was masked"
    fraction = masked.sum() / mask.sum()
    assert abs(float(fraction) - ratio) < 0.04, float(fraction)
    # Spans never cross the boundary between modalities: cut each row at it and every run is a union of whole spans.
    for row, ids in zip(masked[:8], modality_ids[:8]):
        for m in (0, 1):
            within = row[(ids == m) & mask[0]]
            assert min(runs(within)) >= min(span, 1) and (span == 1 or max(runs(within)) >= span)


def test_per_modality_spans_are_clipped_at_the_end_of_a_modality():
    modality_ids, mask = packed_layout((4, 6), batch=200)
    masked = per_modality_span_mask(modality_ids, mask, 0.5, 50, torch.Generator().manual_seed(1))
    # A span of 50 in runs of 4 and 6 tokens: clipped to the run, never spilling into the next modality or padding.
    for row in masked:
        first, second = row[:4], row[4:10]
        for part in (first, second):
            if part.any():  # a span started inside the run covers it from its start to the run's end
                start = int(part.float().argmax())
                assert part[start:].all()
    assert not (masked & ~mask).any()


def test_every_sample_gets_a_masked_and_a_visible_token():
    modality_ids, mask = packed_layout((3, 2), batch=500)
    for masked in (
        per_modality_span_mask(modality_ids, mask, 0.01, 2, torch.Generator().manual_seed(0)),
        per_modality_span_mask(modality_ids, mask, 0.99, 5, torch.Generator().manual_seed(0)),
    ):
        assert masked.any(dim=1).all()
        assert (mask & ~masked).any(dim=1).all()
    single = torch.tensor([[True, False, False]])
    for seed in range(20):  # a 1-token sample is never masked (nothing would be left to predict it from)
        generator = torch.Generator().manual_seed(seed)
        assert not per_modality_span_mask(torch.zeros(1, 3, dtype=torch.long), single, 0.9, 2, generator).any()
        assert not time_aligned_span_mask(torch.zeros(1, 3), single, 0.9, 2, 0.1, generator).any()


def test_time_aligned_windows_cover_every_modality_at_the_same_times():
    config = tiny_config(mask_mode="time_aligned", mask_ratio=0.3, mask_span_length=2)
    samples = [{"audio": torch.randn(400, 4).numpy(), "video": torch.randn(100, 6).numpy()} for _ in range(16)]
    batch = batch_of(samples)
    mask = batch["attention_mask"].bool()
    masked = compute_mask_positions(config, batch["modality_ids"], mask, batch["timestamps"], torch.Generator().manual_seed(0))
    assert not (masked & ~mask).any()
    fraction = masked.sum() / mask.sum()
    assert abs(float(fraction) - 0.3) < 0.06, float(fraction)
    window = default_span_seconds(config)
    assert window == pytest.approx(2 / 25.0)  # 2 ticks of the slowest clock (video, 25 Hz)
    cell = window / 2
    video, audio = MODALITIES_INDEX["video"], MODALITIES_INDEX["audio"]
    for row in range(len(samples)):
        times, ids, hidden = batch["timestamps"][row], batch["modality_ids"][row], masked[row]
        # Every cell is either masked in all modalities or in none: the masked moment is the same in both streams.
        for modality in (video, audio):
            selected = mask[row] & (ids == modality)
            cells = time_cells(times[selected], cell)
            masked_cells = set(cells[hidden[selected]].tolist())
            visible_cells = set(cells[~hidden[selected]].tolist())
            assert not masked_cells & visible_cells
            if modality == video:
                video_masked = masked_cells
            else:
                audio_masked = masked_cells
        assert video_masked == audio_masked and video_masked


MODALITIES_INDEX = {name: index for index, name in enumerate(MODALITIES)}


def test_time_aligned_mask_handles_a_window_longer_than_the_sample():
    modality_ids, mask = packed_layout((5,), batch=4)
    timestamps = torch.arange(modality_ids.shape[1]).float().expand(4, -1) * 0.01
    masked = time_aligned_span_mask(timestamps, mask, 0.5, 3, 10.0, torch.Generator().manual_seed(0))
    assert masked.any(dim=1).all() and (mask & ~masked).any(dim=1).all()  # clipped, still one visible token


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("mask_ratio", 0.0, "mask_ratio"),
        ("mask_ratio", 1.0, "mask_ratio"),
        ("mask_ratio", -0.2, "mask_ratio"),
        ("mask_span_length", 0, "mask_span_length"),
        ("mask_mode", "random", "mask_mode"),
        ("mask_span_seconds", -1.0, "mask_span_seconds"),
    ],
)
def test_bad_mask_settings_are_config_errors(field, value, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**{field: value})


# ---------------------------------------------------------------------------------------------------------------------
# PosAttnForPreTraining
# ---------------------------------------------------------------------------------------------------------------------


def pretraining_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return PosAttnForPreTraining(tiny_config(**overrides)).eval()


@pytest.mark.parametrize("mode", ["per_modality", "time_aligned"])
def test_pretraining_forward_loss_and_outputs(mode):
    model = pretraining_model(mask_mode=mode, mask_ratio=0.3)
    batch = batch_of(random_samples())
    output = model(**batch)
    assert torch.isfinite(output.loss)
    assert output.modality_losses.shape == (3,) and output.masked_token_counts.shape == (3,)
    assert output.reconstruction.shape == (*batch["modality_ids"].shape, 6)
    assert output.prediction_logits.shape == (*batch["modality_ids"].shape, 37)
    assert torch.equal(model(**batch).mask_positions, output.mask_positions), "eval masks must be reproducible"
    model.train()
    output.loss.backward() if output.loss.requires_grad else None


def test_strided_stem_head_reconstructs_every_frame_of_a_token():
    strided = {name: {**spec, "stem": {"type": "conv", "stride": 2}} if spec.get("input_dim") else spec
               for name, spec in MODALITIES.items()}
    model = pretraining_model(modalities=strided)
    batch = batch_of(random_samples(), modalities=strided)
    video = MODALITIES_INDEX["video"]
    assert model.prediction_heads[video].out_features == 2 * MODALITIES["video"]["input_dim"]
    output = model(**batch)
    assert output.reconstruction.shape[-1] == batch["input_values"].shape[-1]
    # The second frame of each token enters the loss: moving it at masked video tokens moves the video loss.
    moved = dict(batch, input_values=batch["input_values"].clone())
    width = MODALITIES["video"]["input_dim"]
    moved["input_values"][..., width : 2 * width] += 10.0
    again = model(**moved, mask_positions=output.mask_positions)
    assert output.masked_token_counts[video] > 0
    assert again.modality_losses[video] > output.modality_losses[video] + 10


def test_loss_only_on_masked_tokens_and_mask_embedding_used():
    model = pretraining_model()
    batch = batch_of(random_samples())
    mask = batch["attention_mask"].bool()
    masked = torch.zeros_like(mask)
    masked[:, :3] = True  # the first video tokens of every sample (video comes first in the packed layout)
    reference = model(**batch, mask_positions=masked)
    # The features *at* masked tokens are hidden from the encoder:
    changed = dict(batch, input_values=batch["input_values"].clone())
    changed["input_values"][:, :3] += 100.0
    hidden_change = model(**changed, mask_positions=masked)
    # ... the encoder never saw them, so the reconstruction is identical, while the loss (their target) moved.
    torch.testing.assert_close(hidden_change.reconstruction, reference.reconstruction)
    assert hidden_change.loss > reference.loss + 100
    # The loss is the MSE over exactly the masked video tokens (no other token enters it).
    video = MODALITIES_INDEX["video"]
    selected = masked & mask & (batch["modality_ids"] == video)
    manual = (reference.reconstruction[..., :6] - batch["input_values"][..., :6]).pow(2).mean(-1)[selected].mean()
    torch.testing.assert_close(reference.modality_losses[video], manual)
    torch.testing.assert_close(reference.loss, manual)
    assert reference.masked_token_counts.tolist() == [int(selected.sum()), 0, 0]
    # The mask embedding is what masked tokens carry: changing it changes the output.
    with torch.no_grad():
        model.posattn.mask_embedding[video] += torch.randn(model.config.hidden_size)  # not a constant: LayerNorm drops that
    assert not torch.allclose(model(**batch, mask_positions=masked).reconstruction, reference.reconstruction)


def test_modality_without_masked_tokens_is_skipped_not_nan():
    model = pretraining_model()
    samples = [{"audio": sample["audio"]} for sample in random_samples()]  # no video, no text in the whole batch
    output = model(**batch_of(samples))
    video, text = MODALITIES_INDEX["video"], MODALITIES_INDEX["text"]
    assert output.masked_token_counts[video] == 0 and output.masked_token_counts[text] == 0
    assert torch.isfinite(output.loss) and torch.isfinite(output.modality_losses).all()
    torch.testing.assert_close(output.loss, output.modality_losses[MODALITIES_INDEX["audio"]])
    # Nothing masked at all: loss 0, not NaN.
    batch = batch_of(samples)
    empty = model(**batch, mask_positions=torch.zeros_like(batch["attention_mask"]).bool())
    assert float(empty.loss) == 0.0


@pytest.mark.parametrize("absent", [("text",), ("video", "audio")])
def test_a_modality_absent_from_the_batch_needs_no_input(absent):
    """No token of a modality in the batch: its input (`input_ids` for text, `input_values` for the feature ones) may be
    None, as the base model allows; its loss is 0 and left out of the mean."""
    model = pretraining_model()
    samples = [{name: value for name, value in sample.items() if name not in absent} for sample in random_samples()]
    samples = [sample for sample in samples if sample]
    batch = batch_of(samples)
    batch.pop("input_ids" if absent == ("text",) else "input_values", None)
    output = model(**batch)
    for name in absent:
        assert output.masked_token_counts[MODALITIES_INDEX[name]] == 0
        assert float(output.modality_losses[MODALITIES_INDEX[name]]) == 0.0
    assert torch.isfinite(output.loss) and output.loss > 0


def test_base_model_refuses_mask_positions_without_mask_embedding():
    model = PosAttnModel(tiny_config()).eval()
    batch = batch_of(random_samples())
    with pytest.raises(ValueError, match="mask embedding"):
        model(**batch, mask_positions=batch["attention_mask"].bool())


def test_save_load_round_trip_and_auto_class(tmp_path):
    model = pretraining_model(mask_mode="time_aligned")
    batch = batch_of(random_samples())
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModelForPreTraining"] == "modeling_posattn.PosAttnForPreTraining"
    assert (tmp_path / "masking_posattn.py").is_file()
    loaded = AutoModelForPreTraining.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, PosAttnForPreTraining) and loaded.config.mask_mode == "time_aligned"
    torch.testing.assert_close(loaded(**batch).reconstruction, model(**batch).reconstruction)


def test_classifier_loads_the_encoder_of_a_pretraining_checkpoint(tmp_path):
    model = pretraining_model()
    model.save_pretrained(tmp_path)
    config = PosAttnConfig.from_pretrained(tmp_path, num_labels=5)
    classifier, info = PosAttnForSequenceClassification.from_pretrained(
        tmp_path, config=config, output_loading_info=True
    )
    for name, value in model.posattn.state_dict().items():
        if name != "mask_embedding":
            torch.testing.assert_close(classifier.posattn.state_dict()[name], value, msg=name)
    assert {"classifier.weight", "classifier.bias"} <= set(info["missing_keys"])
    assert "posattn.mask_embedding" in info["unexpected_keys"]


# ---------------------------------------------------------------------------------------------------------------------
# posattn-pretrain, its checkpoint, and fine-tuning from it
# ---------------------------------------------------------------------------------------------------------------------

import runpy  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from test_hub import assert_package_absent, assert_remote_classes, fresh_python, run_fresh  # noqa: E402,F401

from modeling_posattn.toolkit.data.synthetic import load_synthetic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = {"num_train": 48, "num_validation": 24, "num_test": 24}


DENORMALS_FLUSHED_BY_PRETRAINING = []


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """`scripts/pretrain.py` on the tiny synthetic task, time-aligned masking, 2 epochs (the console script's code)."""
    output_dir = tmp_path_factory.mktemp("pretrain") / "run"
    argv = [
        "scripts/pretrain.py", "--output_dir", str(output_dir), "--dataset_options", json.dumps(TINY),
        "--num_train_epochs", "2", "--per_device_train_batch_size", "16", "--report_to", "none",
        "--disable_tqdm", "true", "--mask_mode", "time_aligned", "--mask_ratio", "0.3",
    ]
    old_argv = sys.argv
    sys.argv = argv
    torch.set_flush_denormal(False)
    try:
        with pytest.raises(SystemExit) as exit_status:
            runpy.run_path(str(ROOT / "scripts" / "pretrain.py"), run_name="__main__")
    finally:
        sys.argv = old_argv
    assert exit_status.value.code == 0
    DENORMALS_FLUSHED_BY_PRETRAINING.append(denormals_flushed())
    return output_dir


def test_pretrain_script_end_to_end(pretrained):
    assert DENORMALS_FLUSHED_BY_PRETRAINING == [torch.set_flush_denormal(False)]  # False where the CPU cannot
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "README.md", "masking_posattn.py",
                 "train_results.json", "eval_results.json", "trainer_state.json"):
        assert (pretrained / name).is_file(), name
    assert not (pretrained / "test_results.json").exists()
    results = json.loads((pretrained / "all_results.json").read_text())
    assert np.isfinite(results["eval_loss"]) and {"eval_loss_audio", "eval_loss_video", "eval_loss_text"} <= set(results)
    state = json.loads((pretrained / "trainer_state.json").read_text())
    assert state["global_step"] == 6 and state["best_metric"] is not None  # 48 rows / 16 x 2 epochs, selected on loss
    assert sum("eval_loss" in entry for entry in state["log_history"]) >= 2  # the validation curve, one point per epoch
    config = json.loads((pretrained / "config.json").read_text())
    assert config["architectures"] == ["PosAttnForPreTraining"] and config["mask_mode"] == "time_aligned"
    assert "id2label" not in config or len(config["id2label"]) == 2  # no labels of the data leaked into it
    model = AutoModelForPreTraining.from_pretrained(pretrained)
    assert isinstance(model, PosAttnForPreTraining) and model.config.mask_ratio == 0.3


def test_pretraining_card_and_publish_check(pretrained, tmp_path):
    from modeling_posattn.toolkit.card_validation import validate_model_card
    from modeling_posattn.toolkit.publish import check_checkpoint, publish

    card = validate_model_card(pretrained / "README.md")
    assert "pretraining" in card.data.tags and card.data.datasets == ["synthetic"]
    text = (pretrained / "README.md").read_text()
    assert "No test data was used" in text and "train 48 samples" in text and "time_aligned" in text
    assert check_checkpoint(pretrained) == []
    summary = publish(pretrained, "someone/posattn-pretrained", dry_run=tmp_path / "staged")
    assert "model.safetensors" in summary["files"] and "masking_posattn.py" in summary["files"]


def test_pretraining_checkpoint_loads_without_the_package(fresh_python, pretrained, tmp_path):
    """A Hub user with only torch and transformers loads the pretraining checkpoint with AutoModelForPreTraining as
    remote code and gets the in-package loss and reconstruction (eval-mode masks come from a fixed seed)."""
    rows = load_synthetic(**TINY).dataset["validation"].select(range(4))
    samples = [{name: np.asarray(row[name]) for name in ("audio", "video", "text") if row[name] is not None} for row in rows]
    report, tensors = run_fresh(fresh_python, tmp_path / "fresh", {"pretrain": pretrained}, samples)
    assert_package_absent(report, tmp_path / "fresh")
    assert_remote_classes(report, "pretrain", ("AutoConfig", "AutoModel", "AutoModelForPreTraining", "AutoProcessor"),
                          tmp_path / "fresh")
    assert all(message for message in report["refusals"].values()), report["refusals"]
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(pretrained)
    model = AutoModelForPreTraining.from_pretrained(pretrained).eval()
    with torch.no_grad():
        output = model(**processor(samples, return_tensors="pt"))
    for name in ("loss", "modality_losses", "reconstruction", "mask_positions"):
        remote = tensors[f"pretrain/AutoModelForPreTraining/{name}"]
        torch.testing.assert_close(remote, getattr(output, name), msg=name)


def test_fine_tuning_loads_the_pretrained_encoder(pretrained, tmp_path):
    """`posattn-train --model_name_or_path <pretraining output>`: the encoder's weights are the checkpoint's, the
    classifier is fresh, and the run trains and tests."""
    from safetensors.torch import load_file

    from modeling_posattn.toolkit.builders import build_model
    from modeling_posattn.toolkit.cli import parse_args
    from modeling_posattn.toolkit.data_sources import load_data
    from modeling_posattn.toolkit.run import run_training

    # The recipe's preset differs from the checkpoint's size (posattn-base): the checkpoint's architecture wins.
    model_args, data_args, _, _ = parse_args(
        [], {"model_name_or_path": str(pretrained), "model_config": "posattn-base", "dataset_options": TINY}
    )
    model = build_model(load_data(data_args, model_args), model_args)
    saved = load_file(pretrained / "model.safetensors")
    encoder_keys = [key for key in saved if key.startswith("posattn.") and key != "posattn.mask_embedding"]
    assert encoder_keys
    for key in encoder_keys:
        torch.testing.assert_close(model.state_dict()[key], saved[key], msg=key)
    assert model.num_labels == 3 and model.config.mask_mode == "time_aligned"
    # Fresh initialisation of the classifier (the checkpoint has none): not zeros, not any saved tensor.
    assert not any(key.startswith("classifier.") for key in saved) and model.classifier.weight.abs().sum() > 0

    metrics = run_training(
        overrides={"model_name_or_path": str(pretrained), "output_dir": str(tmp_path / "finetune"),
                   "dataset_options": TINY, "num_train_epochs": 1, "report_to": "none", "disable_tqdm": True,
                   "save_strategy": "no", "eval_strategy": "no", "load_best_model_at_end": False},
        write_model_card=False,
    )
    assert "test_accuracy" in metrics
    config = json.loads((tmp_path / "finetune" / "config.json").read_text())
    assert config["architectures"] == ["PosAttnForSequenceClassification"] and config["hidden_size"] == 64


def test_fine_tuning_refuses_a_checkpoint_with_other_modalities(pretrained):
    """Per-modality weights are stored by position: data without the checkpoint's `text` would shift nothing here,
    but another list must never load into the wrong modality silently."""
    from modeling_posattn.toolkit.builders import build_model
    from modeling_posattn.toolkit.cli import parse_args
    from modeling_posattn.toolkit.data_sources import load_data

    model_args, data_args, _, _ = parse_args(
        [], {"model_name_or_path": str(pretrained), "dataset_options": {**TINY, "include_text": False}}
    )
    with pytest.raises(ValueError, match=r"the checkpoint's modalities \['audio', 'video', 'text'\] differ from the "
                                         r"data's \['audio', 'video'\]"):
        build_model(load_data(data_args, model_args), model_args)


def test_values_outside_the_masked_tokens_never_reach_the_loss():
    """Padding and other modalities' spare columns may hold NaN (the value checks rightly skip them): the loss and every
    gradient stay finite and equal to those of a clean batch."""
    batch = batch_of(random_samples())
    mask = batch["attention_mask"].bool()
    assert not mask.all()
    dirty = dict(batch, input_values=batch["input_values"].clone())
    dirty["input_values"][~mask] = math.nan
    audio = mask & (batch["modality_ids"] == MODALITIES_INDEX["audio"])
    dirty["input_values"][..., 4:] = torch.where(audio[..., None], math.nan, dirty["input_values"][..., 4:])
    results = []
    for inputs in (batch, dirty):
        model = pretraining_model().train()
        output = model(**inputs, mask_positions=mask & (torch.arange(mask.shape[1]) % 3 == 0))
        output.loss.backward()
        results.append((output.loss, {name: p.grad for name, p in model.named_parameters() if p.grad is not None}))
    (clean_loss, clean_grads), (loss, grads) = results
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, clean_loss)
    for name, gradient in clean_grads.items():
        torch.testing.assert_close(grads[name], gradient, msg=name)
