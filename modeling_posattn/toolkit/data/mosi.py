"""CMU-MOSI / CMU-MOSEI sentiment regression from the unaligned MulT pickles (`mosi_data_noalign.pkl`,
`mosei_senti_data_noalign.pkl`)."""

import os
import pickle
from pathlib import Path

import datasets
import numpy as np

from . import BuiltinDataset
from ._common import arrow_dataset, frames_column, frames_feature

MOSI_PREPARATION_VERSION = "1"
MOSI_MODALITIES = ("text", "audio", "vision")
MOSI_SPLITS = {"train": "train", "valid": "validation", "test": "test"}  # pickle key -> DatasetDict split

MOSI_CITATION = """@article{zadeh2016mosi,
  title={MOSI: Multimodal Corpus of Sentiment Intensity and Subjectivity Analysis in Online Opinion Videos},
  author={Zadeh, Amir and Zellers, Rowan and Pincus, Eli and Morency, Louis-Philippe},
  journal={arXiv preprint arXiv:1606.06259}, year={2016}
}
@inproceedings{zadeh2018mosei,
  title={Multimodal Language Analysis in the Wild: CMU-MOSEI Dataset and Interpretable Dynamic Fusion Graph},
  author={Zadeh, AmirAli Bagher and Liang, Paul Pu and Poria, Soujanya and Cambria, Erik and Morency, Louis-Philippe},
  booktitle={ACL}, year={2018}
}
@inproceedings{tsai2019mult,
  title={Multimodal Transformer for Unaligned Multimodal Language Sequences},
  author={Tsai, Yao-Hung Hubert and Bai, Shaojie and Liang, Paul Pu and Kolter, J. Zico and Morency, Louis-Philippe
          and Salakhutdinov, Ruslan}, booktitle={ACL}, year={2019}
}"""


def strip_padding(frames: np.ndarray) -> np.ndarray:
    """Drop the leading and trailing frames whose values are all exactly 0 (the pickle's zero padding).

    Interior all-zero frames are kept. A frame holding NaN or +-Inf is not padding. A sequence of only zero frames
    becomes empty."""
    live = (frames != 0).reshape(len(frames), -1).any(axis=1)
    if not live.any():
        return frames[:0]
    first = int(np.argmax(live))
    last = len(live) - int(np.argmax(live[::-1]))
    return frames[first:last]


def _load_pickle(path: Path):
    with open(path, "rb") as handle:
        try:
            return pickle.load(handle)
        except UnicodeDecodeError:  # a Python 2 pickle
            handle.seek(0)
            return pickle.load(handle, encoding="latin1")


def _check_split(name: str, split) -> int:
    if not isinstance(split, dict):
        raise ValueError(f"MulT pickle split {name!r} must be a dict, got {type(split).__name__}.")
    missing = [key for key in (*MOSI_MODALITIES, "labels") if key not in split]
    if missing:
        raise ValueError(f"MulT pickle split {name!r} lacks {missing}; it has {sorted(split)}.")
    sizes = {key: np.shape(split[key]) for key in (*MOSI_MODALITIES, "labels")}
    n = sizes["labels"][0]
    for key in MOSI_MODALITIES:
        if len(sizes[key]) != 3 or sizes[key][0] != n:
            raise ValueError(f"MulT pickle split {name!r}: {key!r} must be N x T x D with N={n}, got shape {sizes[key]}.")
    if int(np.prod(sizes["labels"][1:])) != 1:
        raise ValueError(
            f"MulT pickle split {name!r}: labels must hold one sentiment score per sample (N x 1 x 1), got "
            f"{sizes['labels']}; this loader reads MOSI / MOSEI sentiment, not IEMOCAP emotions."
        )
    return n


def load_mosi(
    path: str | os.PathLike,
    audio_sampling_rate: float | None = None,
    vision_sampling_rate: float | None = None,
    strip_zero_padding: bool = True,
    max_samples_per_split: int | None = None,
) -> BuiltinDataset:
    """CMU-MOSI (or CMU-MOSEI) sentiment regression from the unaligned MulT pickle at `path`.

    **Security**: a pickle can execute arbitrary code when loaded. This loader has no default path and never searches
    for files: it only opens the one file that you pass explicitly. Pass only files you trust (e.g. the MulT release).

    Layout read (as MulT's `src/dataset.py`, github.com/yaohungt/Multimodal-Transformer, reads it): a dict with keys
    `"train"`, `"valid"`, `"test"`, each a dict of numpy arrays `"text"` (N x 50 x 300 GloVe word vectors),
    `"audio"` (N x 375 x 5 COVAREP for MOSI; N x 500 x 74 for MOSEI), `"vision"` (N x 500 x 20 Facet for MOSI;
    N x 500 x 35 for MOSEI), `"labels"` (N x 1 x 1 sentiment in [-3, 3]) and `"id"` (ignored: the processor's row
    layout has no room for metadata columns). Feature sizes are read from the arrays.

    What this loader does to the features, per sample and modality:
        - Padding: MulT zero-pads (left padding, per the MulT authors in yaohungt/Multimodal-Transformer issue #3) or
          truncates every sequence to a fixed length. With `strip_zero_padding=True` (default) the leading and
          trailing frames whose values are ALL exactly 0 are dropped (see [`strip_padding`]); interior zero frames
          are kept. The rule is decided on the raw values, before the inf/nan cleanup below, so a frame holding -inf
          is never padding. A genuine all-zero frame at either end (e.g. an out-of-vocabulary word with a zero GloVe
          vector) is indistinguishable from padding and is dropped too. A modality left with no frames is stored as
          None (missing).
        - Non-finite values: NaN and +-Inf become 0 in every modality (the real MOSI audio holds -inf; MulT sets
          `audio[audio == -np.inf] = 0`).
        - Values are otherwise unchanged (fit the processor's normalisation on `train`).

    Modalities: `text`, `audio`, `vision`, all feature modalities. The pickle does not record frame rates after MulT's
    padding/truncation, so by default no modality has a clock (`sampling_rate` None: the processor places each
    modality's tokens 40 ms apart from time 0). Pass `audio_sampling_rate` / `vision_sampling_rate` (e.g. 100 for
    COVAREP's 10 ms hop, 30 for Facet at video frame rate) to declare nominal clocks; `text` stays clockless.

    Splits: `train`, `validation` (the pickle's `valid`), `test`. `problem_type` is `regression`; `labels` is the
    float sentiment score. `max_samples_per_split` keeps the first N samples of each split (quick experiments).
    """
    if path is None:
        raise ValueError("load_mosi needs `path`, the MulT pickle file to read (it never picks a file by itself).")
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"MulT pickle {path} not found: pass the path of `mosi_data_noalign.pkl` or `mosei_senti_data_noalign.pkl` "
            "(from the MulT data release); CMU-MOSI/MOSEI are not shipped with this project."
        )
    for name, rate in (("audio_sampling_rate", audio_sampling_rate), ("vision_sampling_rate", vision_sampling_rate)):
        if rate is not None and not rate > 0:
            raise ValueError(f"`{name}` must be a positive number of frames per second or None, got {rate!r}.")

    data = _load_pickle(path)
    if not isinstance(data, dict) or any(key not in data for key in MOSI_SPLITS):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: expected a dict with keys {list(MOSI_SPLITS)}, got {keys}.")
    for key in MOSI_SPLITS:
        _check_split(key, data[key])
    dims = {m: int(np.shape(data["train"][m])[2]) for m in MOSI_MODALITIES}
    for key in MOSI_SPLITS:
        for m in MOSI_MODALITIES:
            if np.shape(data[key][m])[2] != dims[m]:
                raise ValueError(f"{path}: {m!r} has {np.shape(data[key][m])[2]} features in {key!r} but {dims[m]} in 'train'.")

    rates = {"text": None, "audio": audio_sampling_rate, "vision": vision_sampling_rate}
    modalities = {m: {"input_dim": dims[m], "sampling_rate": None if rates[m] is None else float(rates[m])} for m in MOSI_MODALITIES}
    features = datasets.Features({**{m: frames_feature() for m in MOSI_MODALITIES}, "labels": datasets.Value("float32")})

    splits, stats = {}, {}
    for key, split_name in MOSI_SPLITS.items():
        split = data[key]
        n = len(split["labels"]) if max_samples_per_split is None else min(len(split["labels"]), int(max_samples_per_split))
        columns = {"labels": np.asarray(split["labels"], dtype=np.float32).reshape(len(split["labels"]))[:n]}
        stats[split_name] = {"samples": n}
        for m in MOSI_MODALITIES:
            array = np.asarray(split[m])
            sequences, nonfinite, empty = [], 0, 0
            for i in range(n):
                frames = strip_padding(array[i]) if strip_zero_padding else array[i]
                bad = ~np.isfinite(frames)
                if bad.any():
                    nonfinite += int(bad.sum())
                    frames = np.where(bad, 0.0, frames)
                if len(frames) == 0:
                    empty += 1
                    sequences.append(None)
                else:
                    sequences.append(frames)
            columns[m] = frames_column(sequences, dims[m])
            stats[split_name][m] = {"nonfinite_values_zeroed": nonfinite, "empty_samples": empty}
        splits[split_name] = arrow_dataset(columns, features)

    corpus = "CMU-MOSEI" if "mosei" in path.name.lower() else "CMU-MOSI"
    return BuiltinDataset(
        dataset=datasets.DatasetDict(splits),
        modalities=modalities,
        problem_type="regression",
        label_names=None,
        description=(
            f"{corpus} sentiment intensity regression (labels in [-3, 3]) from the unaligned MulT features: text "
            f"(GloVe, {dims['text']}), audio (COVAREP, {dims['audio']}), vision (Facet, {dims['vision']}); "
            + ("leading/trailing all-zero padding frames stripped; " if strip_zero_padding else "padding kept; ")
            + "NaN/Inf set to 0."
        ),
        source=f"MulT processed features ({path.name}; github.com/yaohungt/Multimodal-Transformer), from the CMU-MultimodalSDK",
        citation=MOSI_CITATION,
        preparation_version=MOSI_PREPARATION_VERSION,
        options={
            "path": str(path),
            "audio_sampling_rate": audio_sampling_rate,
            "vision_sampling_rate": vision_sampling_rate,
            "strip_zero_padding": strip_zero_padding,
            "max_samples_per_split": max_samples_per_split,
            "stats": stats,
        },
    )


__all__ = ["load_mosi", "strip_padding", "MOSI_PREPARATION_VERSION"]
