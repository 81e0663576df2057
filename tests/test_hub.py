"""Hub publishing: self-contained remote-code checkpoints, the model card, and `scripts/publish.py`.

The central check runs in a *fresh* virtual environment that has torch and transformers but not this package (see
`fresh_python`): there, the Auto classes load every saved folder with `trust_remote_code=True` from the folder's own
copied code, and the outputs equal the in-package model's.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_samples, tiny_config

import huggingface_hub
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results
from modeling_posattn import (
    PosAttnConfig,
    PosAttnForSequenceClassification,
    PosAttnModel,
    PosAttnProcessor,
)
from modeling_posattn.configuration_posattn import (
    ABSOLUTE_POSITION_ENCODING_NAMES,
    POSITION_FUSION_NAMES,
    RELATIVE_POSITION_ENCODING_NAMES,
)
from modeling_posattn.toolkit.card import write_model_card
from modeling_posattn.toolkit.card_text import ENCODING_DESCRIPTIONS
from modeling_posattn.toolkit.card_validation import validate_model_card

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO_ROOT / "modeling_posattn"
MODEL_CODE = {
    "configuration_posattn.py", "modeling_posattn.py", "positional_encodings.py", "masking_posattn.py", "stems.py",
    "validation_posattn.py", "attention_posattn.py", "rotary_posattn.py", "embeddings_posattn.py", "bias_posattn.py",
    "split_attention_posattn.py", "grouped_posattn.py", "layers_posattn.py",
}
# stems.py brings grouped_posattn.py (`plain_module`: whether a stem's convolution may be read rather than called)
PROCESSOR_CODE = {
    "processing_posattn.py", "input_checks_posattn.py", "configuration_posattn.py", "stems.py", "grouped_posattn.py",
}
MODEL_AUTO_MAP = {
    "AutoConfig": "configuration_posattn.PosAttnConfig",
    "AutoModel": "modeling_posattn.PosAttnModel",
    "AutoModelForSequenceClassification": "modeling_posattn.PosAttnForSequenceClassification",
    "AutoModelForPreTraining": "modeling_posattn.PosAttnForPreTraining",
}
PROCESSOR_AUTO_MAP = {
    "AutoFeatureExtractor": "processing_posattn.PosAttnProcessor",
    "AutoProcessor": "processing_posattn.PosAttnProcessor",
}
# Non-alphabetical on purpose (see HF_NOTES): the order must survive config.json's sorted keys in the fresh env too.
# Non-default stems (a strided conv, a patch stem) so that the remote code must carry stems.py and the processor's
# frame grouping.
MODALITIES = {
    "video": {"input_dim": 6, "sampling_rate": 25.0, "stem": {"type": "conv", "kernel_size": 3, "stride": 2}},
    "audio": {"input_dim": 4, "sampling_rate": 100.0, "stem": {"type": "patch", "patch_size": [1, 2]}},
    "text": {"vocab_size": 37, "sampling_rate": None},
}
ATOL = 1e-6

# ---------------------------------------------------------------------------------------------------------------------
# A fresh environment with torch and transformers but without this package
# ---------------------------------------------------------------------------------------------------------------------


def _belongs_to_package(entry: Path) -> bool:
    """An entry of site-packages that exposes posattn: the package itself, its dist-info, or an editable-install hook
    (setuptools' `__editable__*` finder and .pth, or a legacy .pth / .egg-link holding the repository path)."""
    name = entry.name.lower()
    if name.startswith("__editable__") or "posattn" in name:
        return True
    if entry.suffix in (".pth", ".egg-link") and entry.is_file():
        return str(REPO_ROOT) in entry.read_text(errors="ignore")
    return False


@pytest.fixture(scope="module")
def fresh_python(tmp_path_factory) -> Path:
    """The interpreter of a new venv (`--without-pip`) that sees this environment's packages, minus posattn.

    The current site-packages is mirrored by symlinks into a folder without the package's entries, and the venv's
    site-packages gets a .pth that adds that mirror as a site dir. The base interpreter's own site-packages is not used
    (it has no torch), and the venv runs isolated (`-I`: no PYTHONPATH, no user site) with its cwd outside the repo.
    """
    root = tmp_path_factory.mktemp("fresh_env")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    mirror = root / "parent_site_packages"
    mirror.mkdir()
    sources = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    for source in sources:
        for entry in source.iterdir():
            if not _belongs_to_package(entry) and not (mirror / entry.name).exists():
                (mirror / entry.name).symlink_to(entry)
    python = root / "venv" / "bin" / "python"
    site_packages = subprocess.run(
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, cwd=root,
    ).stdout.strip()
    Path(site_packages, "_posattn_test_parent_env.pth").write_text(f"import site; site.addsitedir({str(mirror)!r})\n")
    return python


REMOTE_SCRIPT = textwrap.dedent(
    r'''
    """Runs in the fresh env: is posattn absent? Then load saved folders through the Auto classes, as a Hub user would."""
    import importlib.metadata, importlib.util, json, sys
    from pathlib import Path

    spec = json.loads(Path(sys.argv[1]).read_text())
    report = {"sys_path": sys.path, "prefix": sys.prefix, "find_spec": importlib.util.find_spec("modeling_posattn") is not None}
    try:
        import modeling_posattn  # noqa: F401
        report["import_error"] = None
    except ImportError as error:
        report["import_error"] = repr(error)
    try:
        importlib.metadata.distribution("posattn")
        report["distribution"] = True
    except importlib.metadata.PackageNotFoundError:
        report["distribution"] = False

    report["torch_and_transformers"] = all(importlib.util.find_spec(name) for name in ("torch", "transformers"))
    folders = {key: Path(path) for key, path in spec.get("folders", {}).items()}
    if not folders and not spec.get("pickle_folders"):
        Path(spec["report"]).write_text(json.dumps(report, indent=1))
        sys.exit(0)

    import numpy as np
    import torch
    from transformers import (AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForPreTraining,
                              AutoModelForSequenceClassification, AutoProcessor)
    tensors, classes, refusals = {}, {}, {}

    def refused(load):
        try:
            load()
        except (ValueError, OSError) as error:
            return f"{type(error).__name__}: {error}"
        return None

    # Without trust_remote_code nothing loads (checked before any trusted load has cached the code).
    for key, folder in folders.items():
        if (folder / "config.json").exists():
            refusals[f"{key}/AutoConfig"] = refused(lambda: AutoConfig.from_pretrained(folder, trust_remote_code=False))
            refusals[f"{key}/AutoModel"] = refused(lambda: AutoModel.from_pretrained(folder, trust_remote_code=False))
        if (folder / "preprocessor_config.json").exists():
            refusals[f"{key}/AutoProcessor"] = refused(lambda: AutoProcessor.from_pretrained(folder, trust_remote_code=False))
    # Pickle weights are not accepted.
    for key, folder in spec.get("pickle_folders", {}).items():
        refusals[f"{key}/pickle"] = refused(lambda: AutoModelForSequenceClassification.from_pretrained(
            folder, trust_remote_code=True, use_safetensors=True))

    if folders:
        data = np.load(spec["samples"], allow_pickle=False)
        samples = [{} for _ in range(int(data["count"]))]
        for name in data.files:
            if name != "count":
                index, modality = name.split("__", 1)
                samples[int(index)][modality] = data[name]

    def note(key, obj):
        module = type(obj).__module__
        classes[key] = {"class": type(obj).__name__, "module": module, "file": sys.modules[module].__file__}

    batch = None
    for key, folder in folders.items():  # a folder holding the processor comes first: its batch feeds the models
        if (folder / "preprocessor_config.json").exists():
            processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
            extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
            note(f"{key}/AutoProcessor", processor)
            note(f"{key}/AutoFeatureExtractor", extractor)
            encoded = dict(processor(samples, return_tensors="pt"))
            for name, value in dict(extractor(samples, return_tensors="pt")).items():
                tensors[f"{key}/AutoFeatureExtractor/{name}"] = value
            for name, value in encoded.items():
                tensors[f"{key}/AutoProcessor/{name}"] = value
            batch = batch or encoded
        if (folder / "config.json").exists():
            config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
            note(f"{key}/AutoConfig", config)
            classes[f"{key}/AutoConfig"]["modality_names"] = list(config.modality_names)
        if list(folder.glob("*.safetensors")):
            kwargs = dict(trust_remote_code=True, use_safetensors=True)
            base = AutoModel.from_pretrained(folder, **kwargs)
            note(f"{key}/AutoModel", base)
            with torch.no_grad():
                output = base(**batch)
            tensors[f"{key}/AutoModel/last_hidden_state"] = output.last_hidden_state
            tensors[f"{key}/AutoModel/pooler_output"] = output.pooler_output
            if "PosAttnForSequenceClassification" in (config.architectures or []):
                head = AutoModelForSequenceClassification.from_pretrained(folder, **kwargs)
                note(f"{key}/AutoModelForSequenceClassification", head)
                with torch.no_grad():
                    tensors[f"{key}/AutoModelForSequenceClassification/logits"] = head(**batch).logits
                classes[f"{key}/AutoModelForSequenceClassification"]["training"] = head.training
            if "PosAttnForPreTraining" in (config.architectures or []):
                pretraining = AutoModelForPreTraining.from_pretrained(folder, **kwargs)
                note(f"{key}/AutoModelForPreTraining", pretraining)
                with torch.no_grad():  # eval mode: masks drawn from the model's fixed eval seed
                    output = pretraining(**batch)
                for name in ("loss", "modality_losses", "reconstruction", "mask_positions"):
                    tensors[f"{key}/AutoModelForPreTraining/{name}"] = getattr(output, name)

    report.update(classes=classes, refusals=refusals)
    torch.save(tensors, spec["tensors"])
    Path(spec["report"]).write_text(json.dumps(report, indent=1))
    '''
)


def run_fresh(python: Path, workdir: Path, folders: dict[str, Path] | None = None, samples=None, pickle_folders=None):
    """Run `REMOTE_SCRIPT` in the fresh env with a private HF cache; returns (report, tensors)."""
    workdir.mkdir(parents=True, exist_ok=True)
    if samples is not None:
        arrays = {f"{i}__{name}": np.asarray(value) for i, sample in enumerate(samples) for name, value in sample.items()}
        np.savez(workdir / "samples.npz", count=np.asarray(len(samples)), **arrays)
    spec = {
        "folders": {key: str(path) for key, path in (folders or {}).items()},
        "pickle_folders": {key: str(path) for key, path in (pickle_folders or {}).items()},
        "samples": str(workdir / "samples.npz"),
        "tensors": str(workdir / "tensors.pt"),
        "report": str(workdir / "report.json"),
    }
    (workdir / "spec.json").write_text(json.dumps(spec))
    (workdir / "remote_check.py").write_text(REMOTE_SCRIPT)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "HF_HOME": str(workdir / "hf_home"),
        "HF_MODULES_CACHE": str(workdir / "hf_modules"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    result = subprocess.run(
        [str(python), "-I", str(workdir / "remote_check.py"), str(workdir / "spec.json")],
        cwd=workdir, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
    )
    assert result.returncode == 0, f"fresh-env script failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    report = json.loads((workdir / "report.json").read_text())
    tensors = torch.load(workdir / "tensors.pt", weights_only=True) if (workdir / "tensors.pt").exists() else {}
    return report, tensors


def assert_package_absent(report: dict, workdir: Path):
    assert report["prefix"] != sys.prefix, "the check ran in this environment, not a fresh one"
    assert report["find_spec"] is False and report["import_error"], "modeling_posattn is importable in the fresh env"
    assert report["distribution"] is False, "the posattn distribution is visible in the fresh env"
    assert not any(Path(entry or ".").resolve() == REPO_ROOT for entry in report["sys_path"])


def assert_remote_classes(report: dict, key: str, auto_classes, workdir: Path):
    """Each class came from the folder's copied code in the private modules cache, not from an installed package."""
    modules_cache = (workdir / "hf_modules").resolve()
    for auto_class in auto_classes:
        loaded = report["classes"][f"{key}/{auto_class}"]
        assert loaded["module"].startswith("transformers_modules."), loaded
        assert Path(loaded["file"]).resolve().is_relative_to(modules_cache), loaded


def in_package_outputs(model, samples, processor) -> dict[str, torch.Tensor]:
    batch = dict(processor(samples, return_tensors="pt"))
    with torch.no_grad():
        output = model(**batch)
    return batch, output


def code_files(folder: Path) -> set[str]:
    return {path.name for path in folder.glob("*.py")}


def assert_code_copied(folder: Path, expected: set[str]):
    assert code_files(folder) == expected
    for name in expected:  # verbatim copies of the package's flat files
        assert (folder / name).read_bytes() == (PACKAGE_DIR / name).read_bytes()


# ---------------------------------------------------------------------------------------------------------------------
# Saved folders
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The config, the base model, the classification head (with its processor) and the processor, each saved alone."""
    root = tmp_path_factory.mktemp("saved")
    samples = random_samples(seed=3)
    processor = PosAttnProcessor(modalities=MODALITIES).fit(samples)  # non-trivial normalisation must travel too
    settings = dict(
        modalities=MODALITIES,
        absolute_position_encoding="multiscale",
        relative_position_encoding="time_rope",
        position_fusion="gated",
        pooling="cls",
    )
    torch.manual_seed(0)
    head = PosAttnForSequenceClassification(tiny_config(**settings)).eval()
    torch.manual_seed(1)
    base = PosAttnModel(tiny_config(**settings)).eval()
    folders = {name: root / name for name in ("head_full", "base_only", "config_only", "processor_only")}
    head.save_pretrained(folders["head_full"])
    processor.save_pretrained(folders["head_full"])
    base.save_pretrained(folders["base_only"])
    tiny_config(**settings).save_pretrained(folders["config_only"])
    processor.save_pretrained(folders["processor_only"])
    return types.SimpleNamespace(root=root, folders=folders, head=head, base=base, processor=processor, samples=samples)


def test_saved_folders_are_self_contained(saved):
    """Whichever class is saved, config.json lists all three model Auto classes and the folder carries their code; the
    processor's file lists AutoFeatureExtractor and AutoProcessor and carries processing_posattn.py; weights are
    safetensors only."""
    folders = saved.folders
    for name in ("head_full", "base_only", "config_only"):
        config = json.loads((folders[name] / "config.json").read_text())
        assert config["auto_map"] == MODEL_AUTO_MAP, name
        assert config["modality_names"] == list(MODALITIES)
    for name in ("head_full", "processor_only"):
        assert json.loads((folders[name] / "preprocessor_config.json").read_text())["auto_map"] == PROCESSOR_AUTO_MAP
    assert_code_copied(folders["head_full"], MODEL_CODE | PROCESSOR_CODE)
    assert_code_copied(folders["base_only"], MODEL_CODE)
    assert_code_copied(folders["config_only"], MODEL_CODE)
    assert_code_copied(folders["processor_only"], PROCESSOR_CODE)
    for name in ("head_full", "base_only"):
        assert (folders[name] / "model.safetensors").is_file()
    assert not [path for folder in folders.values() for path in folder.rglob("*") if path.suffix in (".bin", ".pt", ".pth")]


def test_fresh_env_lacks_the_package(fresh_python, tmp_path):
    report, _ = run_fresh(fresh_python, tmp_path / "probe")
    assert_package_absent(report, tmp_path / "probe")
    assert report["torch_and_transformers"] is True


def test_saved_folders_load_without_the_package(fresh_python, saved, tmp_path):
    """A Hub user with only torch and transformers: the Auto classes load every folder as remote code and the outputs
    equal the in-package model's."""
    folders = saved.folders
    pickle_folder = tmp_path / "pickle_weights"  # the same checkpoint with its weights as a pickle
    shutil.copytree(folders["head_full"], pickle_folder)
    (pickle_folder / "model.safetensors").unlink()
    torch.save(saved.head.state_dict(), pickle_folder / "pytorch_model.bin")

    workdir = tmp_path / "fresh"
    order = ("head_full", "processor_only", "base_only", "config_only")
    report, tensors = run_fresh(
        fresh_python, workdir, {key: folders[key] for key in order}, saved.samples, {"head_full": pickle_folder}
    )
    assert_package_absent(report, workdir)
    assert_remote_classes(
        report, "head_full",
        ("AutoConfig", "AutoModel", "AutoModelForSequenceClassification", "AutoProcessor", "AutoFeatureExtractor"),
        workdir,
    )
    assert_remote_classes(report, "processor_only", ("AutoProcessor", "AutoFeatureExtractor"), workdir)
    assert_remote_classes(report, "base_only", ("AutoConfig", "AutoModel"), workdir)
    assert_remote_classes(report, "config_only", ("AutoConfig",), workdir)
    assert report["classes"]["head_full/AutoModelForSequenceClassification"]["class"] == "PosAttnForSequenceClassification"
    assert report["classes"]["head_full/AutoModel"]["class"] == "PosAttnModel"
    assert report["classes"]["head_full/AutoProcessor"]["class"] == "PosAttnProcessor"
    assert report["classes"]["config_only/AutoConfig"]["modality_names"] == list(MODALITIES)
    assert report["classes"]["head_full/AutoModelForSequenceClassification"]["training"] is False
    for key, message in report["refusals"].items():
        assert message is not None, f"{key} loaded although it should have been refused"
        expected = "safetensors" if key.endswith("/pickle") else "trust_remote_code"
        assert expected in message, (key, message)

    batch, head_output = in_package_outputs(saved.head, saved.samples, saved.processor)
    with torch.no_grad():
        encoder_output = saved.head.posattn(**batch)
        base_output = saved.base(**batch)
    for key in ("head_full", "processor_only"):
        for name, value in batch.items():
            torch.testing.assert_close(tensors[f"{key}/AutoProcessor/{name}"], value, rtol=0, atol=0)
            torch.testing.assert_close(tensors[f"{key}/AutoFeatureExtractor/{name}"], value, rtol=0, atol=0)
    torch.testing.assert_close(tensors["head_full/AutoModelForSequenceClassification/logits"], head_output.logits, rtol=0, atol=ATOL)
    torch.testing.assert_close(tensors["head_full/AutoModel/last_hidden_state"], encoder_output.last_hidden_state, rtol=0, atol=ATOL)
    torch.testing.assert_close(tensors["head_full/AutoModel/pooler_output"], encoder_output.pooler_output, rtol=0, atol=ATOL)
    torch.testing.assert_close(tensors["base_only/AutoModel/last_hidden_state"], base_output.last_hidden_state, rtol=0, atol=ATOL)
    torch.testing.assert_close(tensors["base_only/AutoModel/pooler_output"], base_output.pooler_output, rtol=0, atol=ATOL)


# ---------------------------------------------------------------------------------------------------------------------
# A Trainer run
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two optimiser steps of Trainer on a tiny labelled set, `save_model` with the processor as `processing_class`,
    an evaluation, and the card of the run."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    root = tmp_path_factory.mktemp("trained")
    train_samples = random_samples(seed=5, lengths=[(12 + i, 3 + i % 3, i % 4) for i in range(8)])
    eval_samples = random_samples(seed=6, lengths=[(10 + 2 * i, 2 + i % 2, 1 + i % 3) for i in range(6)])
    for i, sample in enumerate(train_samples + eval_samples):
        sample["labels"] = i % 3
    processor = PosAttnProcessor(modalities=MODALITIES).fit(train_samples)
    torch.manual_seed(0)
    config = tiny_config(
        modalities=MODALITIES,
        absolute_position_encoding="learned",
        relative_position_encoding="alibi",
        position_fusion="concat",
        id2label={0: "audio_first", 1: "synchronous", 2: "video_first"},
        label2id={"audio_first": 0, "synchronous": 1, "video_first": 2},
    )
    model = PosAttnForSequenceClassification(config)

    def rows(samples):
        return [processor.encode_sample(sample, i) for i, sample in enumerate(samples)]

    def compute_metrics(prediction):
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return {"accuracy": float((np.argmax(logits, axis=-1) == prediction.label_ids).mean())}

    args = TrainingArguments(
        output_dir=str(root / "trainer_output"),
        max_steps=2,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=6,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=rows(train_samples),
        eval_dataset=rows(eval_samples),
        data_collator=DataCollatorWithPadding(processor),
        processing_class=processor,
        compute_metrics=compute_metrics,
    )
    train_metrics = trainer.train().metrics
    eval_metrics = trainer.evaluate()
    folder = root / "checkpoint"
    trainer.save_model(str(folder))
    card_path = write_model_card(
        folder,
        config=model.config,
        dataset_name="synthetic",
        dataset_description="A tiny random set generated inside the test, 8 training and 6 evaluation samples.",
        training_summary=train_metrics,
        eval_results=eval_metrics,
        recipe={"learning_rate": 1e-3, "max_steps": 2, "per_device_train_batch_size": 4, "seed": 0},
        eval_split="validation",
    )
    model.eval()
    samples = [{key: value for key, value in sample.items() if key != "labels"} for sample in eval_samples]
    return types.SimpleNamespace(
        folder=folder, card_path=Path(card_path), model=model, processor=processor, samples=samples,
        train_metrics=train_metrics, eval_metrics=eval_metrics,
    )


def test_trainer_folder_loads_without_the_package(fresh_python, trained, tmp_path):
    folder = trained.folder
    assert json.loads((folder / "config.json").read_text())["auto_map"] == MODEL_AUTO_MAP
    assert json.loads((folder / "preprocessor_config.json").read_text())["auto_map"] == PROCESSOR_AUTO_MAP
    assert_code_copied(folder, MODEL_CODE | PROCESSOR_CODE)
    assert (folder / "model.safetensors").is_file()
    # Trainer always pickles its TrainingArguments; no weights are pickled, and publish.py leaves that file out.
    assert {path.name for path in folder.iterdir() if path.suffix in (".bin", ".pt", ".pth")} <= {"training_args.bin"}

    workdir = tmp_path / "fresh"
    report, tensors = run_fresh(fresh_python, workdir, {"trainer": folder}, trained.samples)
    assert_package_absent(report, workdir)
    assert_remote_classes(
        report, "trainer",
        ("AutoConfig", "AutoModel", "AutoModelForSequenceClassification", "AutoProcessor", "AutoFeatureExtractor"),
        workdir,
    )
    batch, output = in_package_outputs(trained.model, trained.samples, trained.processor)
    with torch.no_grad():
        encoder_output = trained.model.posattn(**batch)
    for name, value in batch.items():
        torch.testing.assert_close(tensors[f"trainer/AutoProcessor/{name}"], value, rtol=0, atol=0)
    torch.testing.assert_close(tensors["trainer/AutoModelForSequenceClassification/logits"], output.logits, rtol=0, atol=ATOL)
    torch.testing.assert_close(tensors["trainer/AutoModel/last_hidden_state"], encoder_output.last_hidden_state, rtol=0, atol=ATOL)


# ---------------------------------------------------------------------------------------------------------------------
# The model card
# ---------------------------------------------------------------------------------------------------------------------


def test_card_of_a_trained_run_validates_and_shows_its_results(trained):
    card = validate_model_card(trained.card_path)
    data = card.data.to_dict()
    assert data["library_name"] == "transformers"
    assert {"posattn", "synthetic", "absolute-learned", "relative-alibi"} <= set(data["tags"])
    assert data["datasets"] == ["synthetic"]
    # The same metadata through ModelCardData, and the model-index back to EvalResults.
    assert ModelCard(str(card)).data.to_dict() == data
    model_name, results = model_index_to_eval_results(data["model-index"])
    assert model_name == "checkpoint"
    by_type = {result.metric_type: result for result in results}
    assert set(by_type) == {"loss", "accuracy"}  # runtime and throughput stay out of the model-index
    for key in ("eval_loss", "eval_accuracy"):
        value = trained.eval_metrics[key]
        result = by_type[key.removeprefix("eval_")]
        assert result.metric_value == pytest.approx(value, abs=0)
        assert result.dataset_type == "synthetic" and result.dataset_split == "validation"
        assert f"| {key} | {value:.4f} |" in card.text
    assert f"| train_loss | {trained.train_metrics['train_loss']:.4f} |" in card.text
    text = card.text
    assert "synthetic" in text.lower() and "**Synthetic data.**" in text
    for name in trained.model.config.modality_names:
        assert f"| `{name}` |" in text
    assert "25 tokens/s" in text and "100 tokens/s" in text and "no clock" in text
    for part, name in (("absolute", "learned"), ("relative", "alibi"), ("fusion", "concat")):
        assert ENCODING_DESCRIPTIONS[part][name] in text
    assert "audio_first, synchronous, video_first" in text
    assert "Press, Smith and Lewis, 2022" in text and "Vaswani et al., 2017" in text
    assert "RoFormer" not in text and "Qwen2.5-Omni" not in text and "Perceiver" not in text  # not used by this config
    assert "trust_remote_code=True" in text and "learning_rate | 0.001" in text


def test_card_sentences_and_references_follow_the_config(tmp_path):
    assert set(ENCODING_DESCRIPTIONS["absolute"]) == set(ABSOLUTE_POSITION_ENCODING_NAMES)
    assert set(ENCODING_DESCRIPTIONS["relative"]) == set(RELATIVE_POSITION_ENCODING_NAMES)
    assert set(ENCODING_DESCRIPTIONS["fusion"]) == set(POSITION_FUSION_NAMES)
    config = PosAttnConfig(modalities={"text": {"vocab_size": 9}}, absolute_position_encoding="multiscale", relative_position_encoding="time_rope")
    path = write_model_card(
        tmp_path, config=config.to_dict(), dataset_name="natops", dataset_description="Hand gestures.",
        training_summary={}, eval_results={"test_accuracy": 0.75, "test_runtime": 1.5}, repo_id="someone/posattn-natops",
    )
    card = validate_model_card(path)
    assert [result.metric_type for result in card.data.eval_results] == ["accuracy"]
    assert card.data.model_name == "posattn-natops" and card.data.tags[0] == "posattn"
    for marker in ("Vaswani et al., 2017", "RoFormer", "Qwen2.5-Omni", "Perceiver"):
        assert marker in card.text
    for marker in ("ALiBi, Press", "Press, Smith", "Raffel et al., 2020.", "CPVT", "ConvTran", "Synthetic data"):
        assert marker not in card.text
    assert 'repo = "someone/posattn-natops"' in card.text
    text = Path(path).read_text()
    with pytest.raises(ValueError, match="library_name"):
        validate_model_card(text.replace("library_name: transformers", "library_name: timm"))
    with pytest.raises(ValueError, match="non-numeric"):
        validate_model_card(text.replace("value: 0.75", "value: high"))
    with pytest.raises(ValueError, match="does not parse"):
        validate_model_card(text.replace("  results:", "  outcomes:"))


def test_top_level_package_files_are_exactly_the_remote_code(tmp_path):
    """The house: `modeling_posattn/*.py` (besides `__init__`) is what a checkpoint ships; the rest is the toolkit."""
    config = PosAttnConfig(modalities={"audio": {"input_dim": 4, "sampling_rate": 100.0}}, num_labels=2)
    PosAttnForSequenceClassification(config).save_pretrained(tmp_path)
    PosAttnProcessor.from_model_config(config).save_pretrained(tmp_path)
    shipped = {path.name for path in tmp_path.glob("*.py")}
    top_level = {path.name for path in (REPO_ROOT / "modeling_posattn").glob("*.py")} - {"__init__.py"}
    assert shipped == top_level


# ---------------------------------------------------------------------------------------------------------------------
# posattn-publish (modeling_posattn/toolkit/publish.py), up to the network boundary
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def publish_module():
    from modeling_posattn.toolkit import publish

    return publish


@pytest.fixture
def hub_calls(monkeypatch):
    """Replace the three huggingface_hub calls publish.py makes; record them (and the uploaded files)."""
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))
        return types.SimpleNamespace(repo_id=repo_id)

    def create_branch(self, repo_id, **kwargs):
        calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        files = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
        card = (folder / "README.md").read_text()
        calls.append(("upload_folder", kwargs["repo_id"], dict(kwargs, files=files, card=card)))
        return types.SimpleNamespace(commit_url="https://huggingface.co/fake/commit/1")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_branch", create_branch)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    return calls


def test_publish_dry_run_writes_a_complete_folder(publish_module, trained, tmp_path, hub_calls):
    out = tmp_path / "dry"
    assert publish_module.main([str(trained.folder), "someone/posattn-demo", "--dry-run", str(out)]) == 0
    assert hub_calls == []  # no network
    files = {str(path.relative_to(out)) for path in out.rglob("*") if path.is_file()}
    assert files == {"config.json", "preprocessor_config.json", "model.safetensors", "README.md"} | MODEL_CODE | PROCESSOR_CODE
    assert publish_module.check_checkpoint(out) == []
    card = (out / "README.md").read_text()
    assert 'repo = "someone/posattn-demo"' in card and "<repo_id>" not in card
    validate_model_card(out / "README.md")


def test_publish_calls_the_hub_with_the_right_arguments(publish_module, trained, tmp_path, hub_calls):
    dry = tmp_path / "dry"
    publish_module.main([str(trained.folder), "someone/posattn-demo", "--dry-run", str(dry)])
    expected_files = sorted(str(path.relative_to(dry)) for path in dry.rglob("*") if path.is_file())

    argv = [str(trained.folder), "someone/posattn-demo", "--private", "--revision", "exp-1", "--commit-message", "Run 7"]
    assert publish_module.main(argv) == 0
    assert [call[0] for call in hub_calls] == ["create_repo", "create_branch", "upload_folder"]
    (_, repo, create), (_, branch_repo, branch), (_, upload_repo, upload) = hub_calls
    assert repo == branch_repo == upload_repo == "someone/posattn-demo"
    assert create["private"] is True and create["exist_ok"] is True and create["repo_type"] == "model"
    assert branch["branch"] == "exp-1" and branch["exist_ok"] is True
    assert upload["revision"] == "exp-1" and upload["commit_message"] == "Run 7" and upload["repo_type"] == "model"
    assert upload["files"] == expected_files  # exactly what the dry run wrote
    assert upload["card"] == (dry / "README.md").read_text()

    hub_calls.clear()
    assert publish_module.main([str(trained.folder), "someone/posattn-demo"]) == 0  # main branch, public
    assert [call[0] for call in hub_calls] == ["create_repo", "upload_folder"]
    assert hub_calls[0][2]["private"] is False and hub_calls[1][2]["revision"] is None


@pytest.mark.parametrize(
    "damage, message",
    [
        ("pickle", "pytorch_model.bin"),
        ("no_card", "README.md"),
        ("partial_auto_map", "AutoModel"),
        ("missing_code", "positional_encodings.py"),
        ("no_weights", "safetensors"),
    ],
)
def test_publish_refuses_incomplete_or_unsafe_folders(publish_module, trained, tmp_path, hub_calls, capsys, damage, message):
    folder = tmp_path / "checkpoint"
    shutil.copytree(trained.folder, folder)
    if damage == "pickle":
        torch.save(trained.model.state_dict(), folder / "pytorch_model.bin")
    elif damage == "no_card":
        (folder / "README.md").unlink()
    elif damage == "partial_auto_map":
        config = json.loads((folder / "config.json").read_text())
        config["auto_map"] = {"AutoConfig": config["auto_map"]["AutoConfig"],
                              "AutoModelForSequenceClassification": config["auto_map"]["AutoModelForSequenceClassification"]}
        (folder / "config.json").write_text(json.dumps(config))
    elif damage == "missing_code":
        (folder / "positional_encodings.py").unlink()
    elif damage == "no_weights":
        (folder / "model.safetensors").unlink()
    assert publish_module.main([str(folder), "someone/posattn-demo", "--dry-run", str(tmp_path / "dry")]) == 2
    assert publish_module.main([str(folder), "someone/posattn-demo"]) == 2
    error = capsys.readouterr().err
    assert "Refusing to publish" in error and message in error
    assert hub_calls == [] and not (tmp_path / "dry").exists()


def test_card_carries_the_dataset_studies(tmp_path):
    from modeling_posattn import PosAttnConfig
    from modeling_posattn.toolkit.card import study_summaries, write_model_card
    from modeling_posattn.toolkit.card_validation import validate_model_card

    results = tmp_path / "results"
    (results / "natops_multirate").mkdir(parents=True)
    (results / "natops_multirate" / "summary.md").write_text("| configuration | accuracy |\n|---|---|\n| time_rope | 0.900 |\n")
    (results / "av_digits").mkdir()
    (results / "av_digits" / "summary.md").write_text("| other | 0.1 |\n")
    studies = study_summaries("natops", results)
    assert "natops_multirate" in studies and "time_rope | 0.900" in studies and "other" not in studies
    config = PosAttnConfig(modalities={"hand_tips": {"input_dim": 6, "sampling_rate": 25.0}}, hidden_size=16, num_attention_heads=2)
    path = write_model_card(tmp_path / "card", config=config, dataset_name="natops", dataset_description="NATOPS.",
                            training_summary={}, eval_results={"accuracy": 0.9}, studies=studies)
    text = open(path).read()
    assert "## Positional-encoding studies on this dataset" in text and "time_rope | 0.900" in text
    validate_model_card(path)
    assert study_summaries("mosi", results) is None


# ---------------------------------------------------------------------------------------------------------------------
# posattn-publish security: each attack crafted, each refused (or its file left out of the upload)
# ---------------------------------------------------------------------------------------------------------------------


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def _pickle_bytes(protocol=4) -> bytes:
    import pickle

    return pickle.dumps(_Exploit(), protocol=protocol)


def _attack(folder: Path, attack: str, secret: Path) -> None:
    import gzip

    import numpy as np

    if attack == "symlink_to_secret":
        (folder / "notes.txt").symlink_to(secret)
    elif attack == "symlinked_folder":
        (folder / "extra").symlink_to(secret.parent, target_is_directory=True)
    elif attack == "pth_tar":
        torch.save({"w": torch.zeros(2)}, folder / "weights.pth.tar")
    elif attack == "object_npy":
        np.save(folder / "table.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif attack == "pkl_gz":
        (folder / "state.pkl.gz").write_bytes(gzip.compress(_pickle_bytes()))
    elif attack == "gzip_pickle_renamed":
        (folder / "extra.json").write_bytes(gzip.compress(_pickle_bytes()))
    elif attack == "pickle_renamed_txt":
        (folder / "notes.txt").write_bytes(_pickle_bytes(protocol=0))
    elif attack == "torch_zip_renamed_json":
        torch.save({"w": torch.zeros(2)}, folder / "extra_weights.json")
    elif attack == "processor_config_foreign_code":
        (folder / "processor_config.json").write_text(json.dumps(
            {"processor_class": "EvilProcessor", "auto_map": {"AutoProcessor": "evil/repo--processing_evil.EvilProcessor"}}))
    elif attack == "list_auto_map_foreign_code":
        config = json.loads((folder / "config.json").read_text())
        config["auto_map"]["AutoTokenizer"] = [None, "evil/repo--tokenization_evil.EvilTokenizerFast"]
        (folder / "config.json").write_text(json.dumps(config))
    elif attack == "tokenizer_config_foreign_code":
        (folder / "tokenizer_config.json").write_text(json.dumps({"auto_map": {"AutoTokenizer": ["tok.Slow", "other--tok.Fast"]}}))


PUBLISH_ATTACKS_REFUSED = [
    ("symlink_to_secret", "Symbolic links: ['notes.txt']"),
    ("symlinked_folder", "Symbolic links: ['extra']"),
    ("pth_tar", "weights.pth.tar"),
    ("object_npy", "table.npy"),
    ("pkl_gz", "state.pkl.gz"),
    ("gzip_pickle_renamed", "extra.json (a compressed pickle)"),
    ("pickle_renamed_txt", "notes.txt (a pickle stream)"),
    ("torch_zip_renamed_json", "extra_weights.json (a zip archive holding pickles"),
    ("processor_config_foreign_code", "processor_config.json: auto_map['AutoProcessor']"),
    ("list_auto_map_foreign_code", "config.json: auto_map['AutoTokenizer'] = [None, 'evil/repo--tokenization_evil"),
    ("tokenizer_config_foreign_code", "tokenizer_config.json: auto_map['AutoTokenizer']"),
]


@pytest.mark.parametrize(("attack", "message"), PUBLISH_ATTACKS_REFUSED, ids=[row[0] for row in PUBLISH_ATTACKS_REFUSED])
def test_publish_refuses_each_attack(publish_module, trained, tmp_path, hub_calls, capsys, attack, message):
    folder = tmp_path / "checkpoint"
    shutil.copytree(trained.folder, folder)
    secret = tmp_path / "home" / ".netrc"
    secret.parent.mkdir()
    secret.write_text("machine huggingface.co login me password hunter2\n")
    _attack(folder, attack, secret)
    assert publish_module.main([str(folder), "someone/posattn-demo", "--dry-run", str(tmp_path / "dry")]) == 2
    assert publish_module.main([str(folder), "someone/posattn-demo"]) == 2
    error = capsys.readouterr().err
    assert "Refusing to publish" in error and message in error, error
    assert hub_calls == [] and not (tmp_path / "dry").exists()


def test_publish_leaves_out_dotfiles_and_other_kinds(publish_module, trained, tmp_path, hub_calls):
    folder = tmp_path / "checkpoint"
    shutil.copytree(trained.folder, folder)
    (folder / ".env").write_text("HF_TOKEN=hf_secret\n")
    (folder / ".secrets").mkdir()
    (folder / ".secrets" / "token.txt").write_text("hf_secret\n")
    (folder / "run.sh").write_text("echo hi\n")
    (folder / "notes.txt").write_text("(c) someone.\n")  # text that merely looks like an old pickle's opening
    out = tmp_path / "dry"
    assert publish_module.main([str(folder), "someone/posattn-demo", "--dry-run", str(out)]) == 0
    uploaded = {str(path.relative_to(out)) for path in out.rglob("*")}
    assert "notes.txt" in uploaded and not {".env", ".secrets", "run.sh"} & uploaded
    assert publish_module.main([str(folder), "someone/posattn-demo"]) == 0
    assert "hf_secret" not in json.dumps(hub_calls[-1][2]["files"]) and ".env" not in hub_calls[-1][2]["files"]
