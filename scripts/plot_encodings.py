#!/usr/bin/env python
"""Draw each encoding's position similarity (or attention bias) for audio at 100 Hz next to video at 25 Hz.

One second of each: 100 audio tokens then 25 video tokens, in the packed order the processor uses. For absolute
encodings the panel is the cosine similarity of the encodings p_i . p_j; for rotary ones the score that a fixed query
and key (all ones) get at positions i and j, mean_k cos(theta_k (pos_i - pos_j)); for bias ones the bias b(i, j)
averaged over heads. The off-diagonal blocks show audio-video pairs: a *time-aligned* encoding draws their bright line
where audio and video show the same moment (slope 1:4 in tokens), an index-based one where their indices are equal.

    python scripts/plot_encodings.py            # writes docs/encodings_time_alignment.png
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from modeling_posattn import PosAttnConfig, PosAttnModel, PosAttnProcessor  # noqa: E402
from modeling_posattn.positional_encodings import dense_attention_bias  # noqa: E402

MODALITIES = {"audio": {"input_dim": 1, "sampling_rate": 100.0}, "video": {"input_dim": 1, "sampling_rate": 25.0}}
PANELS = [
    ("sinusoidal", dict(absolute_position_encoding="sinusoidal"), "index"),
    ("learned (init)", dict(absolute_position_encoding="learned"), "index"),
    ("dynamic (tAPE)", dict(absolute_position_encoding="dynamic"), "index / length"),
    ("multiscale", dict(absolute_position_encoding="multiscale"), "time"),
    ("rope", dict(absolute_position_encoding="none", relative_position_encoding="rope"), "index"),
    ("time_rope", dict(absolute_position_encoding="none", relative_position_encoding="time_rope"), "time"),
    ("alibi", dict(absolute_position_encoding="none", relative_position_encoding="alibi"), "time"),
    ("relative_bias (init)", dict(absolute_position_encoding="none", relative_position_encoding="relative_bias"), "time"),
]


@torch.no_grad()
def panel_matrix(settings: dict) -> np.ndarray:
    config = PosAttnConfig(modalities=MODALITIES, hidden_size=64, num_attention_heads=4, num_hidden_layers=1,
                           max_position_embeddings=128, **settings)
    torch.manual_seed(0)
    model = PosAttnModel(config).eval()
    batch = PosAttnProcessor(modalities=MODALITIES)([{"audio": np.zeros((100, 1)), "video": np.zeros((25, 1))}], return_tensors="pt")
    positions = model.token_positions(batch["input_values"], None, batch["modality_ids"], None, None, batch["attention_mask"])
    absolute, relative = model.embeddings.position_encoding, model.relative_position_encoding
    if absolute is not None:
        encoding = absolute(torch.zeros(1, 125, config.hidden_size), positions)[0]
        encoding = torch.nn.functional.normalize(encoding, dim=-1)
        return (encoding @ encoding.T).numpy()
    if relative.kind == "rotary":
        positions_scaled = relative.rotary_positions(positions)[0].float()
        delta = positions_scaled[:, None] - positions_scaled[None, :]
        return torch.cos(delta[..., None] * relative.inv_freq).mean(-1).numpy()
    return dense_attention_bias(relative, positions, torch.float32)[0].mean(0).numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="docs/encodings_time_alignment.png")
    args = parser.parse_args()
    figure, axes = plt.subplots(2, 4, figsize=(17, 9))
    for axis, (title, settings, basis) in zip(axes.flat, PANELS):
        matrix = panel_matrix(settings)
        axis.imshow(matrix, cmap="viridis")
        axis.axhline(99.5, color="white", lw=0.8)
        axis.axvline(99.5, color="white", lw=0.8)
        # where audio token i and video token j show the same moment: j = i / 4
        audio_index = np.arange(100)
        axis.plot(100 + audio_index / 4, audio_index, "r--", lw=0.8)
        axis.set_title(f"{title}\npositions by {basis}", fontsize=10)
        axis.set_xticks([50, 112]), axis.set_xticklabels(["audio 100 Hz", "video 25 Hz"])
        axis.set_yticks([50, 112]), axis.set_yticklabels(["audio", "video"], rotation=90, va="center")
    figure.suptitle("Position similarity / bias between 1 s of audio (100 tokens) and 1 s of video (25 tokens). "
                    "Red dashes: same moment in time. Time-aligned encodings peak on them.", fontsize=11)
    figure.tight_layout()
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
