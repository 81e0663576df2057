"""Rotary position encodings of PosAttn (RoFormer's rotation of q and k): index RoPE and time-aligned RoPE, and the
rotation itself, in the half layout (as transformers' llama) and as one complex product on interleaved pairs (as
LLaMA's reference code). `positional_encodings.RELATIVE_POSITION_ENCODINGS` registers the two encodings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, dynamic_rope_update

from .configuration_posattn import PosAttnConfig


if TYPE_CHECKING:
    from .positional_encodings import TokenPositions


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def signed_sin(sin: torch.Tensor) -> torch.Tensor:
    """`[-sin_1, sin_2]` (the halves of the last dimension): with it, `rotate_half(x) * sin == roll(x, d/2) * signed_sin`,
    so the rotation needs no negation and no concatenation of q or k. Computed once per forward, shared by all layers."""
    first, second = sin.chunk(2, dim=-1)
    return torch.cat((-first, second), dim=-1)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """`x cos + rotate_half(x) sin` with two temporaries instead of five: `x * cos` (which becomes the result, a fused
    multiply-add in place) and `roll(x, d/2)`. `cos` and `sin_signed` do not require grad, so the in-place add keeps
    autograd exact."""
    return (x * cos).addcmul_(x.roll(x.shape[-1] // 2, dims=-1), sin_signed)


def apply_rotary_pos_emb(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """Rotate `(B, heads, L, head_dim)` queries and keys by `(B, L, head_dim)` angles (the textbook `sin`)."""
    return apply_rotary_signed(q, k, cos, signed_sin(sin))


def apply_rotary_signed(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor):
    """`apply_rotary_pos_emb` with `signed_sin(sin)` precomputed, as the model does once per forward."""
    cos, sin_signed = cos.unsqueeze(1), sin_signed.unsqueeze(1)
    return rotate(q, cos, sin_signed), rotate(k, cos, sin_signed)


@dataclass
class RotaryAngles:
    """What every layer rotates q and k by, computed once per forward: the half-layout `cos` and `signed_sin` (always),
    and in eager float32/64 the complex `phasors` with the q/k projection `rows` that put rotation pairs side by side."""

    cos: torch.Tensor
    signed_sin: torch.Tensor
    phasors: torch.Tensor | None = None
    rows: torch.Tensor | None = None


def rotation_phasors(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`(B, L, 1, d/2)` complex $s\,e^{i\theta_k}$ from the `(B, L, d)` half-layout `cos`/`sin` (whose halves repeat)."""
    half = cos.shape[-1] // 2
    return torch.complex(cos[..., :half], sin[..., :half]).unsqueeze(2)


def interleaved_rows(num_heads: int, head_dim: int, device: torch.device) -> torch.Tensor:
    """Row order of a q/k projection that puts each rotation pair `(x_k, x_{k + d/2})` of every head side by side."""
    half = torch.arange(head_dim, device=device).view(2, head_dim // 2).t().flatten()
    return (torch.arange(num_heads, device=device)[:, None] * head_dim + half).flatten()


def rotate_interleaved(x: torch.Tensor, phasors: torch.Tensor, own: bool = False) -> torch.Tensor:
    """RoFormer's rotation as a complex product (as in LLaMA's reference code): `x` is `(B, L, heads, d)` with its
    rotation pairs interleaved (`interleaved_rows`), each pair one complex number. One multiplication forward and one
    backward, where the half layout takes three passes forward (`rotate`) and four backward. A half-precision `x` (under
    autocast) is rotated in float32 and returned in its own dtype: there is no complex bfloat16. `own`: `x` is the
    caller's temporary, which nothing else sees; without a gradient to record it is then rotated where it lies (no
    fresh `(B, L, H)` block in inference)."""
    full_precision = x.dtype in (torch.float32, torch.float64)
    if own and full_precision and not (torch.is_grad_enabled() and x.requires_grad):
        torch.view_as_complex(x.unflatten(-1, (-1, 2))).mul_(phasors)
        return x
    working = x if full_precision else x.float()
    pairs = torch.view_as_complex(working.unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * phasors).flatten(-2).to(x.dtype)


class RotaryPositionEncoding(nn.Module):
    r"""RoPE on the token index within its modality (Su et al., 2021, RoFormer).

    $q_i, k_j$ are rotated by $i\theta_k$, $\theta_k = b^{-2k/d}$, so $q_i^\top k_j$ depends on $i - j$ only. The
    frequencies and their length scaling (linear, dynamic NTK, YaRN...) come from `config.rope_parameters` through
    transformers' `ROPE_INIT_FUNCTIONS`; `config.max_position_embeddings` is the training length they refer to.
    """

    kind = "rotary"

    def __init__(self, config: PosAttnConfig):
        super().__init__()
        self.config = config
        self.rope_type = config.rope_parameters.get("rope_type", "default")
        self.max_seq_len_cached = config.max_position_embeddings
        self.original_max_seq_len = config.max_position_embeddings
        inv_freq, self.attention_scaling = self._rope_init_fn(config)
        self.inv_freq = nn.Buffer(inv_freq, persistent=False)
        self.original_inv_freq = nn.Buffer(inv_freq.clone(), persistent=False)

    @property
    def _rope_init_fn(self) -> Callable:
        return self.compute_default_rope_parameters if self.rope_type == "default" else ROPE_INIT_FUNCTIONS[self.rope_type]

    def initial_buffers(self) -> dict[str, torch.Tensor]:
        inv_freq, _ = self._rope_init_fn(self.config)
        return {"inv_freq": inv_freq, "original_inv_freq": inv_freq}

    @staticmethod
    def compute_default_rope_parameters(config: PosAttnConfig, device=None, seq_len=None, **kwargs):
        base, dim = config.rope_parameters["rope_theta"], config.head_dim
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float, device=device) / dim))
        return inv_freq, 1.0

    def rotary_positions(self, positions: TokenPositions) -> torch.Tensor:
        return positions.position_ids

    def forward(self, hidden_states: torch.Tensor, positions: TokenPositions) -> tuple[torch.Tensor, torch.Tensor]:
        return self._cos_sin(hidden_states, self.rotary_positions(positions))

    @torch.no_grad()
    @dynamic_rope_update
    def _cos_sin(self, x: torch.Tensor, position_ids: torch.Tensor):
        freqs = position_ids.unsqueeze(-1).float() * self.inv_freq.to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * self.attention_scaling).to(x.dtype), (emb.sin() * self.attention_scaling).to(x.dtype)


class TimeRotaryPositionEncoding(RotaryPositionEncoding):
    r"""RoPE on absolute time: TMRoPE (Xu et al., 2025, Qwen2.5-Omni), rotary id = seconds x `time_units_per_second`.

    An audio frame at 100 Hz and a video frame at 25 Hz at the same moment get the same phase, so $q_i^\top k_j$
    depends only on $t_i - t_j$, whatever the modalities' rates. Ids are kept fractional rather than floored to the
    40 ms grid, so alignment is exact for any rate.
    """

    def rotary_positions(self, positions: TokenPositions) -> torch.Tensor:
        return positions.timestamps * self.config.time_units_per_second
