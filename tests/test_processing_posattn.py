"""PosAttnProcessor (and transformers' DataCollatorWithPadding over it): layout, times, normalisation, truncation, columns, bad input."""

import numpy as np
import pytest
import torch
from conftest import MODALITIES, build_model, random_samples

from modeling_posattn import PosAttnProcessor
from modeling_posattn.positional_encodings import default_timestamps
from transformers import AutoFeatureExtractor, AutoProcessor, DataCollatorWithPadding


@pytest.fixture
def processor():
    return PosAttnProcessor(modalities=MODALITIES)


def test_packed_layout(processor):
    sample = random_samples(lengths=((8, 2, 3),))[0]
    batch = processor([sample], return_tensors="pt")
    assert set(batch) == {"input_values", "input_ids", "modality_ids", "position_ids", "timestamps", "attention_mask"}
    # blocks follow modality_names order: video, audio, text
    assert batch["modality_ids"][0].tolist() == [0] * 2 + [1] * 8 + [2] * 3
    assert batch["position_ids"][0].tolist() == [0, 1] + list(range(8)) + [0, 1, 2]
    torch.testing.assert_close(batch["input_values"][0, 2:10, :4], torch.as_tensor(sample["audio"]))
    assert (batch["input_values"][0, 2:10, 4:] == 0).all()
    assert batch["input_ids"][0, 10:].tolist() == list(sample["text"])
    audio_times = batch["timestamps"][0, 2:10]
    torch.testing.assert_close(audio_times, torch.arange(8, dtype=torch.float64) / 100.0)  # float64: see test_bad_inputs
    # text is spread over the sample's duration: max(8 / 100, 2 / 25) = 0.08 s
    torch.testing.assert_close(batch["timestamps"][0, 10:], (torch.arange(3, dtype=torch.float64) + 0.5) * 0.08 / 3)


def test_processor_times_match_model_defaults(processor):
    """The processor and the model fill missing times with the same rule."""
    batch = processor(random_samples(lengths=((8, 2, 3), (0, 0, 5), (3, 7, 0))), return_tensors="pt")
    mask = batch["attention_mask"].bool()
    rates = [MODALITIES[name]["sampling_rate"] for name in processor.modality_names]
    derived = default_timestamps(batch["position_ids"], batch["modality_ids"], mask, rates)
    torch.testing.assert_close(derived[mask], batch["timestamps"][mask].float())
    # text alone: 40 ms apart
    torch.testing.assert_close(batch["timestamps"][1, :5], torch.arange(5, dtype=torch.float64) * 0.04)


def test_given_timestamps_are_used(processor):
    sample = {"audio": np.zeros((3, 4)), "timestamps": {"audio": [0.0, 0.5, 2.0]}}
    batch = processor([sample], return_tensors="pt")
    torch.testing.assert_close(batch["timestamps"][0], torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64))


def test_fit_normalises_and_is_saved(tmp_path, processor):
    rng = np.random.default_rng(0)
    train = [{"audio": rng.normal(5.0, 3.0, size=(50, 4))} for _ in range(20)]
    processor.fit(train)
    stats = processor.normalization["audio"]
    np.testing.assert_allclose(stats["mean"], 5.0, atol=0.3)
    np.testing.assert_allclose(stats["std"], 3.0, atol=0.3)
    values = processor(train, return_tensors="pt")["input_values"][..., :4]
    assert abs(float(values.mean())) < 1e-4 and abs(float(values.std()) - 1) < 1e-2
    processor.save_pretrained(tmp_path)
    reloaded = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(reloaded, PosAttnProcessor) and isinstance(AutoProcessor.from_pretrained(tmp_path), PosAttnProcessor)
    assert reloaded.normalization == processor.normalization and reloaded.modality_names == processor.modality_names
    torch.testing.assert_close(reloaded(train[:2], return_tensors="pt")["input_values"], processor(train[:2], return_tensors="pt")["input_values"])


def test_truncation_warns_and_is_reported():
    processor = PosAttnProcessor(modalities=MODALITIES, max_tokens={"audio": 5}, max_seconds=0.2)
    sample = {"audio": np.zeros((30, 4)), "video": np.zeros((10, 6))}
    with pytest.warns(UserWarning, match=r"modality 'audio': truncated from 30 to 5"):
        batch = processor([sample], return_tensors="pt")
    assert int((batch["modality_ids"] == 1).sum()) == 5
    # video: 10 frames at 25 Hz, 0.2 s keeps frames at 0.00 .. 0.16
    assert int((batch["modality_ids"] == 0).sum()) == 5


def test_nothing_is_truncated_silently(recwarn, processor):
    processor([{"audio": np.zeros((3000, 4))}])
    assert not [w for w in recwarn if "truncated" in str(w.message)]


def test_columns_map_and_collator_train_with_stock_trainer(tmp_path):
    """The tokenizer idiom: raw columns -> map(processor, padding=False) -> Trainer(default args) + collator."""
    import datasets
    from transformers import Trainer, TrainingArguments

    from modeling_posattn import PosAttnForSequenceClassification

    rng = np.random.default_rng(0)
    rows = []
    for i in range(48):
        label = i % 2
        audio = rng.normal(size=(int(rng.integers(5, 20)), 4)).astype(np.float32) + (1.5 if label else -1.5)
        rows.append({"audio": audio.tolist(), "video": None, "text": rng.integers(0, 37, 4).tolist(), "labels": label})
    dataset = datasets.Dataset.from_list(rows)
    processor = PosAttnProcessor(modalities=MODALITIES)
    encoded = dataset.map(processor, batched=True, fn_kwargs={"padding": False}, remove_columns=["audio", "video", "text"])
    assert "modality_ids" in encoded.column_names
    model = build_model(PosAttnForSequenceClassification, num_labels=2)
    model.train()
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, num_train_epochs=4,
                             learning_rate=3e-3, logging_steps=1, report_to=[], save_strategy="no", use_cpu=True)
    assert args.remove_unused_columns
    trainer = Trainer(model=model, args=args, train_dataset=encoded, data_collator=DataCollatorWithPadding(processor))
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4]), losses


@pytest.mark.parametrize(
    "sample, message",
    [
        ({"lidar": np.zeros((3, 2))}, "unknown modality 'lidar'"),
        ({"audio": np.zeros((3, 5))}, r"modality 'audio': features must have shape \(T, 4\)"),
        ({"audio": np.zeros((3, 4)), "timestamps": {"audio": [0.0, 0.1]}}, r"modality 'audio': `timestamps` has shape \(2,\) but the modality has 3 tokens"),
        ({"audio": np.array([[0.0, 1.0, np.nan, 0.0]])}, "modality 'audio': features hold NaN or Inf"),
        ({"video": np.full((2, 6), np.inf)}, "modality 'video': features hold NaN or Inf"),
        ({}, "has no tokens at all"),
        ({"audio": np.zeros((0, 4)), "text": []}, "has no tokens at all"),
        ({"text": [1.0, 2.0]}, "modality 'text': token ids must be integers"),
        ({"text": [1, 99]}, r"modality 'text': token ids must lie in \[0, 37\)"),
        ({"audio": np.zeros((3, 4)), "timestamps": {"audio": [0.0, 0.2, 0.1]}}, "modality 'audio': `timestamps` must be sorted"),
        ({"audio": np.zeros((2, 4)), "timestamps": {"audio": [-0.1, 0.2]}}, r"modality 'audio': `timestamps` must be >= 0"),
        ({"audio": np.zeros((2, 4)), "timestamps": {"video": [0.1]}}, "modality 'video': `timestamps` given but the modality is missing"),
        ({"audio": np.zeros(4)}, r"modality 'audio': features must have shape \(T, 4\)"),
    ],
)
def test_bad_input_names_modality_and_problem(processor, sample, message):
    with pytest.raises(ValueError, match=message):
        processor([{"audio": np.zeros((2, 4))}, sample])


def test_bad_input_error_names_the_sample(processor):
    with pytest.raises(ValueError, match="Sample 1, modality 'audio'"):
        processor([{"audio": np.zeros((2, 4))}, {"audio": np.zeros((2, 3))}])


def test_pad_takes_transformers_padding_keywords():
    """`DataCollatorWithPadding(processor)` passes padding / max_length / pad_to_multiple_of / return_tensors."""
    processor = PosAttnProcessor(modalities=MODALITIES)
    rows = processor([{"audio": np.ones((3, 4)), "labels": 0}, {"audio": np.ones((6, 4)), "text": [1, 2], "labels": 1}],
                     padding=False)
    rows = [dict(zip(rows.keys(), values)) for values in zip(*rows.values())]
    assert DataCollatorWithPadding(processor)(rows)["modality_ids"].shape == (2, 8)
    batch = DataCollatorWithPadding(processor, pad_to_multiple_of=16)(rows)
    assert batch["input_values"].shape == (2, 16, processor.feature_dim) and batch["attention_mask"].sum() == 11
    batch = DataCollatorWithPadding(processor, padding="max_length", max_length=12, return_tensors="np")(rows)
    assert isinstance(batch["timestamps"], np.ndarray) and batch["timestamps"].shape == (2, 12)
    assert "attention_mask" not in processor.pad(rows[:1], return_attention_mask=False)  # nothing padded: no mask needed
    with pytest.raises(ValueError, match="read the padding as tokens"):
        processor.pad(rows, return_attention_mask=False)
    with pytest.raises(ValueError, match="more than max_length=5.*truncates"):
        processor.pad(rows, padding="max_length", max_length=5)
    with pytest.raises(ValueError, match="one length"):
        processor.pad(rows, padding=False)
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        processor.pad(rows, pad_to_multiple_of=0)
