r"""Per-modality stems: how the frames of a feature modality become token embeddings, chosen in the modality's spec.

A feature modality may declare `"stem": {"type": ..., ...}` in its spec (default `{"type": "linear"}`, today's one
Linear per modality). Every stem has a `stride` s (default 1): the processor groups s consecutive frames of the
modality into one token (the s frames concatenated, `s * input_dim` floats, the last group zero-filled), so the packed
layout the model sees is always in post-stem tokens. A stem maps `(batch, seq_len, s * input_dim)` packed token
features and the modality's token mask `(batch, seq_len)` to `(batch, seq_len, hidden_size)`, zero at every position
that is not a real token of its modality. All stems run over the whole packed sequence and mask with `torch.where`
instead of selecting tokens (no boolean indexing, no host sync); other modalities and padding then behave exactly like
zero padding, whatever they hold (a product with the mask would turn a NaN there into NaN outputs and gradients).

- `linear`: $e_j = W [x_{js}; \dots; x_{js+s-1}] + b$ (one Linear over the token's frames).
- `conv`: temporal convolution shared over channels, then a strided spatial convolution that mixes all channels and
  frames of a token (ConvTran, Foumani et al., 2023; Disjoint-CNN, Foumani et al., 2021).
- `patch`: the token's `s x input_dim` frames seen as a small image, cut into patches (ViT, Dosovitskiy et al., 2021;
  AST, Gong et al., 2021 for spectrograms), each patch embedded by a shared linear map, then one Linear over all patches.
"""

from typing import Any

import torch
from torch import nn
from transformers.activations import ACT2FN

from .grouped_posattn import plain_module

STEM_DEFAULTS: dict[str, dict[str, Any]] = {
    "linear": {"stride": 1},
    "conv": {"stride": 1, "kernel_size": 8, "filters": 8},
    "patch": {"stride": 1, "patch_size": None, "filters": 16},
}


def stem_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The modality's stem with every option filled from `STEM_DEFAULTS` (`{"type": "linear", "stride": 1}` when absent)."""
    stem = dict(spec.get("stem") or {"type": "linear"})
    return {"type": stem["type"], **STEM_DEFAULTS[stem["type"]], **stem}


def token_feature_dim(spec: dict[str, Any]) -> int:
    """Floats per packed token of a feature modality: `stride * input_dim` (0 for a token-id modality)."""
    if spec.get("input_dim") is None:
        return 0
    return stem_spec(spec)["stride"] * spec["input_dim"]


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def validate_stem_spec(name: str, spec: dict[str, Any]) -> None:
    """Raise a `ValueError` naming the modality and the option when its `stem` is unusable."""
    if "stem" not in spec or spec["stem"] is None:
        return
    stem = spec["stem"]
    where = f"Modality '{name}': `stem`"
    if spec.get("input_dim") is None:
        raise ValueError(f"{where} applies to feature modalities (`input_dim`) only, not to token ids.")
    if not isinstance(stem, dict) or stem.get("type") not in STEMS:
        raise ValueError(f"{where} must be a dict with `type` one of {sorted(STEMS)}, got {stem!r}.")
    unknown = set(stem) - {"type", *STEM_DEFAULTS[stem["type"]]}
    if unknown:
        raise ValueError(f"{where} of type {stem['type']!r}: unknown option(s) {sorted(unknown)}; known {sorted(STEM_DEFAULTS[stem['type']])}.")
    full = stem_spec(spec)
    for option in ("stride", "kernel_size", "filters"):
        if option in full and not _positive_int(full[option]):
            raise ValueError(f"{where}: `{option}` must be a positive int, got {full[option]!r}.")
    if full["type"] == "patch":
        patch = full["patch_size"]
        if (
            not isinstance(patch, (list, tuple))
            or len(patch) != 2
            or not all(_positive_int(p) for p in patch)
            or full["stride"] % patch[0]
            or spec["input_dim"] % patch[1]
        ):
            raise ValueError(
                f"{where}: `patch_size` must be [frames, features] dividing [stride, input_dim] = "
                f"[{full['stride']}, {spec['input_dim']}], got {patch!r}."
            )


def own_frames(values: torch.Tensor, selected: torch.Tensor, in_features: int) -> torch.Tensor:
    """The modality's `in_features` columns at its own tokens (`selected`, `(B, L, 1)` bool), zero elsewhere."""
    return torch.where(selected, values[..., :in_features], 0.0)


class LinearStem(nn.Linear):
    r"""One Linear over the token's frames: $e_j = W [x_{js}; \dots; x_{js+s-1}] + b$ (s = 1: today's projection).

    A subclass of `nn.Linear` so that checkpoints saved before stems existed load unchanged.
    """

    def __init__(self, spec: dict[str, Any], hidden_size: int):
        super().__init__(token_feature_dim(spec), hidden_size)

    def forward(self, values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            return super().forward(values[..., : self.in_features])
        selected = mask.bool().unsqueeze(-1)
        return torch.where(selected, super().forward(own_frames(values, selected, self.in_features)), 0.0)


class ConvStem(nn.Module):
    r"""Temporal then spatial convolution (ConvTran's embedding, Foumani et al., 2023, DMKD; Disjoint-CNN, 2021).

    With the modality's frames $x \in \mathbb{R}^{T \times D}$ (T = tokens x stride) and F filters of width k shared by
    all D channels (ConvTran's `Conv2d(1, F, [1, k])`):

    $u_{c,f} = \mathrm{GELU}(\mathrm{LN}(w_f * x_{:,c}))$ ('same' padding), then
    $e_j = \mathrm{GELU}(\mathrm{LN}(\sum_{c,f} V_{c,f} * u_{c,f}))$ with V a convolution of width and step s over time
    (ConvTran's `[C, 1]` spatial conv, plus the stride): token j sees frames js..js+s-1 after the temporal conv, i.e.
    a receptive field of s + k - 1 frames around the token's own frames ((k - 1) // 2 before them, k // 2 after).

    Frames outside the modality's real tokens are zeroed before the temporal convolution, so neighbours from other
    modalities or padding act as zero padding and never leak in; every other token's output is zeroed at the end.

    The weights are those of the two `Conv1d`s, but the computation keeps frames in `(B, T, channels)` order, so the
    norms and activations run over contiguous memory without transposes: the temporal filters as one small GEMM over
    each frame's k-frame window (`unfold`, copied once as the GEMM's operand: k times the frames), and the spatial
    convolution, whose width equals its step, as one Linear over a token's s frames side by side (a view). The
    `Conv1d` modules hold the weights (checkpoints load unchanged) and are not called while they are plain
    (`plain_module`); a hooked, wrapped or adapted one (a LoRA adapter) is called, as two `Conv1d`s over `(B, channels,
    T)` frames (`embed_by_modules`), so what it adds reaches the forward. Once the batch's count of the modality's
    tokens is known (the value checks' host sync), only those tokens are embedded (`embed_own_tokens`), not every
    token of the packed batch.
    """

    def __init__(self, spec: dict[str, Any], hidden_size: int, eps: float = 1e-5, act: str = "gelu"):
        super().__init__()
        options = stem_spec(spec)
        self.input_dim, self.stride, self.filters = spec["input_dim"], options["stride"], options["filters"]
        self.in_features = self.stride * self.input_dim
        self.temporal = nn.Conv1d(1, self.filters, options["kernel_size"], padding="same")
        # the temporal window: k frames, (k - 1) // 2 of them before the frame (Conv1d's 'same' padding), the rest after
        self.window, self.frames_before = options["kernel_size"], (options["kernel_size"] - 1) // 2
        self.temporal_norm = nn.LayerNorm(self.input_dim * self.filters, eps=eps)
        self.spatial = nn.Conv1d(self.input_dim * self.filters, hidden_size, self.stride, stride=self.stride)
        self.spatial_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.activation = ACT2FN[act]

    def filter_windows(self, windows: torch.Tensor) -> torch.Tensor:
        """`(..., D, k)` windows of k frames per channel -> `(..., D * F)`, channel `d * F + f` the f-th temporal filter
        over channel d: one GEMM."""
        filters = self.temporal.weight.view(self.filters, self.window).t()
        return torch.addmm(self.temporal.bias, windows.reshape(-1, self.window), filters).view(*windows.shape[:-2], -1)

    def embed_filtered(self, filtered: torch.Tensor) -> torch.Tensor:
        """`(B, T, D * F)` filtered frames -> `(B, T / s, H)` tokens: norm, activation, then the spatial kernel over
        each token's s frames side by side, frame-major (its weight laid out the same way: `(H, s * D * F)`)."""
        hidden = self.activation(self.temporal_norm(filtered))
        kernel = self.spatial.weight.transpose(1, 2).reshape(self.spatial.out_channels, -1)
        hidden = nn.functional.linear(hidden.reshape(hidden.shape[0], -1, kernel.shape[1]), kernel, self.spatial.bias)
        return self.activation(self.spatial_norm(hidden))

    def forward(self, values: torch.Tensor, mask: torch.Tensor, own_tokens: int | None = None) -> torch.Tensor:
        """`own_tokens`: how many tokens `mask` selects (known after the value checks' host sync): then only they
        are embedded (`embed_own_tokens`)."""
        weights_stand_in = all(plain_module(conv, nn.Conv1d) for conv in (self.temporal, self.spatial))
        if weights_stand_in and own_tokens is not None and 0 < own_tokens < mask.numel():
            return self.embed_own_tokens(values, mask, own_tokens)
        batch, length = mask.shape
        selected = mask.bool().unsqueeze(-1)
        # Tokens back to frames: (B, L, s*D) -> (B, L*s, D); the token's frames are contiguous, in order.
        frames = own_frames(values, selected, self.in_features).reshape(batch, length * self.stride, self.input_dim)
        if not weights_stand_in:
            return torch.where(selected, self.embed_by_modules(frames), 0.0).to(values.dtype)
        padding = (0, 0, self.frames_before, self.window - 1 - self.frames_before)
        windows = nn.functional.pad(frames, padding).unfold(1, self.window, 1)  # (B, T, D, k)
        # in the features' dtype: float32 under autocast, as the convolutions' output times a float mask gave it
        return torch.where(selected, self.embed_filtered(self.filter_windows(windows)), 0.0).to(values.dtype)

    def embed_by_modules(self, frames: torch.Tensor) -> torch.Tensor:
        """`(B, T, D)` frames -> `(B, T / s, H)` tokens with both convolutions called as modules: the computation of
        `filter_windows` and `embed_filtered`, in the `Conv1d`s' own layout."""
        batch, length, channels = frames.shape
        filtered = self.temporal(frames.transpose(1, 2).reshape(batch * channels, 1, length))  # (B * D, F, T)
        filtered = filtered.reshape(batch, channels * self.filters, length).transpose(1, 2)  # channel d * F + f, as above
        hidden = self.activation(self.temporal_norm(filtered))
        hidden = self.spatial(hidden.transpose(1, 2)).transpose(1, 2)  # (B, T / s, H)
        return self.activation(self.spatial_norm(hidden))

    def embed_own_tokens(self, values: torch.Tensor, mask: torch.Tensor, own_tokens: int) -> torch.Tensor:
        """The stem over the modality's `own_tokens` tokens only, put back in place: the packed computation's result
        for `own_tokens / (B * L)` of its work. Each own frame's window is gathered from the packed frames (zero at
        every other token) by frame index, one row of D values per frame; a frame past its sample's edges reads a row
        of zeros appended after the last frame (so the k-times-larger windows are never masked)."""
        batch, length = mask.shape
        selected = mask.bool().unsqueeze(-1)
        frames = own_frames(values, selected, self.in_features).reshape(-1, self.input_dim)  # (B * L * s, D)
        tokens = torch.argsort(~mask.flatten())[:own_tokens]  # own tokens' flat indices (any order: windows go by index)
        frame_index = (tokens[:, None] * self.stride + torch.arange(self.stride, device=tokens.device)).flatten()
        offsets = torch.arange(-self.frames_before, self.window - self.frames_before, device=tokens.device)
        neighbour = frame_index[:, None] + offsets  # (n * s, k)
        per_sample = length * self.stride
        inside = neighbour.div(per_sample, rounding_mode="floor") == frame_index.div(per_sample, rounding_mode="floor")[:, None]
        zero_row = frames.shape[0]
        frames = torch.cat((frames, frames.new_zeros(1, self.input_dim)))  # (B * L * s + 1, D)
        # whole frames (rows of D values) gathered: faster than gathering each channel's values from the transpose
        windows = frames.index_select(0, torch.where(inside, neighbour, zero_row).flatten())  # (n * s * k, D)
        windows = windows.view(-1, self.window, self.input_dim).transpose(1, 2)  # (n * s, D, k)
        embedded = self.embed_filtered(self.filter_windows(windows)[None])[0].to(values.dtype)  # (own_tokens, H)
        return embedded.new_zeros(batch * length, embedded.shape[-1]).index_copy(0, tokens, embedded).view(batch, length, -1)


class PatchStem(nn.Module):
    r"""The token's `stride x input_dim` frames as a one-channel image cut into `patch_size` patches (ViT patch
    embedding, Dosovitskiy et al., 2021; AST on spectrograms, Gong et al., 2021):

    $u_p = \mathrm{GELU}(\mathrm{LN}(W_p\,\mathrm{vec}(\text{patch}_p)))$ for each of the P patches, then $e_j = V[u_1; \dots; u_P]$.

    Each token is embedded from its own frames only, so nothing crosses tokens, modalities or padding. The patch
    embedding's weights are a `Conv2d`'s whose width equals its step, applied as one Linear over every patch's values
    (the patches cut by a view and one copy of the frames); the `Conv2d` holds them (checkpoints load unchanged) and is
    called only where it is not plain (`plain_module`: a hook, a wrapper or an adapter on it), over the token's frames
    as a one-channel image.
    """

    def __init__(self, spec: dict[str, Any], hidden_size: int, eps: float = 1e-5, act: str = "gelu"):
        super().__init__()
        options = stem_spec(spec)
        self.input_dim, self.stride = spec["input_dim"], options["stride"]
        self.in_features = self.stride * self.input_dim
        patch = self.patch_size = tuple(options["patch_size"])
        num_patches = (self.stride // patch[0]) * (self.input_dim // patch[1])
        self.patch_embedding = nn.Conv2d(1, options["filters"], patch, stride=patch)
        self.patch_norm = nn.LayerNorm(options["filters"], eps=eps)
        self.activation = ACT2FN[act]
        self.projection = nn.Linear(num_patches * options["filters"], hidden_size)

    def forward(self, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length = mask.shape
        selected = mask.bool().unsqueeze(-1)
        rows, columns = self.patch_size
        image = own_frames(values, selected, self.in_features)
        if plain_module(self.patch_embedding, nn.Conv2d):
            # (B, L, s, D) frames as (row block, row, column block, column) -> (B, L, P, rows * columns), row-major
            image = image.view(batch, length, self.stride // rows, rows, self.input_dim // columns, columns)
            patches = image.transpose(3, 4).reshape(batch, length, -1, rows * columns)
            patches = nn.functional.linear(patches, self.patch_embedding.weight.flatten(1), self.patch_embedding.bias)
        else:
            patches = self.patch_embedding(image.reshape(batch * length, 1, self.stride, self.input_dim))  # (N, F, ., .)
            patches = patches.flatten(2).transpose(1, 2).reshape(batch, length, -1, patches.shape[1])  # row-major
        patches = self.activation(self.patch_norm(patches)).flatten(2)  # (B, L, P * F)
        return torch.where(selected, self.projection(patches), 0.0)


STEMS: dict[str, type[nn.Module]] = {"linear": LinearStem, "conv": ConvStem, "patch": PatchStem}


def build_stem(spec: dict[str, Any], hidden_size: int, eps: float = 1e-5, act: str = "gelu") -> nn.Module:
    """The stem a feature modality's spec asks for."""
    stem_class = STEMS[stem_spec(spec)["type"]]
    return stem_class(spec, hidden_size) if stem_class is LinearStem else stem_class(spec, hidden_size, eps=eps, act=act)
