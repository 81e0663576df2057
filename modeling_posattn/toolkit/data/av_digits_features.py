"""AV-digits raw material: reading FSDD clips and MNIST idx files, log-mel audio features, image degradations and
image tokens. `av_digits.py` pairs them into the dataset."""

import gzip
import os
import wave
from pathlib import Path

import numpy as np
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

AUDIO_SAMPLING_RATE = 8000  # FSDD: 8 kHz mono int16
HOP_LENGTH = 80  # 10 ms -> 100 frames per second
WINDOW_LENGTH = 200  # 25 ms Hann window, zero-padded to the FFT size
FFT_LENGTH = 256
NUM_MEL_BINS = 40
MEL_FLOOR = 1e-6
FRAME_RATE = AUDIO_SAMPLING_RATE / HOP_LENGTH  # 100.0
TEST_RECORDING_INDICES = range(0, 5)  # FSDD README: indices 0-4 of every digit and speaker are the test set


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read a (gzipped) IDX file (MNIST format) into a numpy array of its declared shape and dtype."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number).")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX element type 0x{data[2]:02x}.")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {int(np.prod(shape))} elements for shape {shape}, found {array.size}.")
    return array.reshape(shape)


def read_wav(path: str | os.PathLike) -> np.ndarray:
    """A mono 16-bit PCM wav -> float32 samples in [-1, 1) (stdlib `wave` + numpy)."""
    with wave.open(str(path), "rb") as handle:
        if handle.getsampwidth() != 2 or handle.getnchannels() != 1:
            raise ValueError(f"{path}: expected mono 16-bit PCM, got {handle.getnchannels()} channel(s) of {8 * handle.getsampwidth()} bits.")
        if handle.getframerate() != AUDIO_SAMPLING_RATE:
            raise ValueError(f"{path}: expected {AUDIO_SAMPLING_RATE} Hz, got {handle.getframerate()} Hz.")
        frames = handle.readframes(handle.getnframes())
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0


def list_fsdd_clips(recordings: Path) -> list[dict]:
    """Every `{digit}_{speaker}_{index}.wav`, sorted by (digit, speaker, index), with its split by recording index."""
    clips = []
    for path in recordings.glob("*.wav"):
        parts = path.stem.split("_")
        if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit():
            continue
        digit, speaker, index = int(parts[0]), parts[1], int(parts[2])
        split = "test" if index in TEST_RECORDING_INDICES else "train"
        clips.append({"clip": path.name, "digit": digit, "speaker": speaker, "recording_index": index, "split": split})
    clips.sort(key=lambda c: (c["digit"], c["speaker"], c["recording_index"]))
    return clips


def add_noise_at_snr(waveform: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise whose power is the clip's mean power / 10^(snr_db / 10)."""
    power = float(np.mean(waveform.astype(np.float64) ** 2))
    noise = rng.standard_normal(len(waveform)) * np.sqrt(power / 10.0 ** (snr_db / 10.0))
    return (waveform + noise).astype(np.float32)


class LogMel:
    """Log-mel frames at 100 Hz: 25 ms Hann window (200 samples) zero-padded to a 256-point FFT, 10 ms hop (80
    samples), power spectrum, 40 Slaney mel filters over 0-4 kHz, natural log with floor `MEL_FLOOR`; frames centred
    (reflect padding), so frame i is centred on time i / 100 s. Built on `transformers.audio_utils`."""

    def __init__(self):
        self.window = window_function(WINDOW_LENGTH, "hann", frame_length=FFT_LENGTH)
        self.mel_filters = mel_filter_bank(
            num_frequency_bins=FFT_LENGTH // 2 + 1,
            num_mel_filters=NUM_MEL_BINS,
            min_frequency=0.0,
            max_frequency=AUDIO_SAMPLING_RATE / 2,
            sampling_rate=AUDIO_SAMPLING_RATE,
            norm="slaney",
            mel_scale="slaney",
        )

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        features = spectrogram(
            waveform,
            self.window,
            frame_length=FFT_LENGTH,
            hop_length=HOP_LENGTH,
            fft_length=FFT_LENGTH,
            power=2.0,
            center=True,
            pad_mode="reflect",
            mel_filters=self.mel_filters,
            mel_floor=MEL_FLOOR,
            log_mel="log",
        )
        return features.T.astype(np.float32)  # frames x mel bins


def degrade_image(image: np.ndarray, noise_std: float, occlusion: int, rng_noise, rng_occlusion) -> np.ndarray:
    """`image` in [0, 1]: first an `occlusion x occlusion` square set to 0 (background) at a uniform position fully
    inside the image, then additive Gaussian noise of std `noise_std`, clipped back to [0, 1]."""
    image = image.copy()
    if occlusion:
        top, left = rng_occlusion.integers(0, image.shape[0] - occlusion + 1, size=2)
        image[top : top + occlusion, left : left + occlusion] = 0.0
    if noise_std:
        image = np.clip(image + rng_noise.standard_normal(image.shape) * noise_std, 0.0, 1.0)
    return image.astype(np.float32)


def image_tokens(image: np.ndarray, layout: str) -> np.ndarray:
    """28 x 28 image -> tokens: `rows` (28 tokens of 28 pixels, top to bottom) or `patches` (16 tokens of 7 x 7 = 49
    pixels: a 4 x 4 grid in row-major order, each patch flattened row-major)."""
    if layout == "rows":
        return image
    return image.reshape(4, 7, 4, 7).transpose(0, 2, 1, 3).reshape(16, 49)


# ---------------------------------------------------------------------------------------------------------------------
# Loader
# ---------------------------------------------------------------------------------------------------------------------
