"""The PosAttn encoder layer: pre-norm self-attention (dispatched through transformers' attention interface, with
PosAttn's rotary, time-split and query-blocked paths) and the MLP; in inference each residual sum is written into the
sublayer's output where nothing else sees it (`add_residual`)."""

from collections.abc import Callable

import torch
from torch import nn

from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs

from .attention_posattn import attention_function, flex_attention_with_score_mod, query_blocked_attention
from .bias_posattn import QueryBlockedBias
from .configuration_posattn import PosAttnConfig
from .grouped_posattn import plain_module
from .rotary_posattn import RotaryAngles, apply_rotary_signed, rotate_interleaved
from .split_attention_posattn import TimeSplitBias, time_split_attention


class PosAttnAttention(nn.Module):
    """Multi-head self-attention dispatched through transformers' attention interface."""

    def __init__(self, config: PosAttnConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.is_causal = False
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_embeddings: RotaryAngles | None = None,
        score_mod: Callable | None = None,
        attention_bias: QueryBlockedBias | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        rotary = position_embeddings
        if rotary is not None and rotary.phasors is not None and self.plain_query_key_projections():
            # q and k come out with their rotation pairs side by side, so each rotation is one complex product; the
            # same row order in q and k leaves every score q.k unchanged
            query = self.projection_rows(self.q_proj, hidden_states, rotary.rows).view(hidden_shape)
            key = self.projection_rows(self.k_proj, hidden_states, rotary.rows).view(hidden_shape)
            # q and k are fresh from `projection_rows` (a functional linear, which no hook sees)
            query = rotate_interleaved(query, rotary.phasors, own=True).transpose(1, 2)
            key = rotate_interleaved(key, rotary.phasors, own=True).transpose(1, 2)
        else:
            query = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
            key = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
            if rotary is not None:
                query, key = apply_rotary_signed(query, key, rotary.cos, rotary.signed_sin)
        value = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)

        if score_mod is not None:
            attention_interface: Callable = flex_attention_with_score_mod
            kwargs["score_mod"] = score_mod
        elif attention_bias is not None:
            split = isinstance(attention_bias, TimeSplitBias)
            attention_interface = time_split_attention if split else query_blocked_attention
            kwargs["attention_bias"] = attention_bias
        else:
            attention_interface = attention_function(self.config)
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        if torch.compiler.is_exporting():
            # SDPA's export-time output is contiguous after the transpose, so the reshape is traced as a view; ONNX
            # decomposes SDPA with a float bias into a math graph with other strides, where that view fails.
            attn_output = attn_output.clone(memory_format=torch.contiguous_format)
        attn_output = self.o_proj(attn_output.reshape(*input_shape, -1).contiguous())
        return attn_output, attn_weights

    def plain_query_key_projections(self) -> bool:
        """Whether q_proj and k_proj are plain Linears without hooks, so their rows may be used directly: an adapter
        (LoRA), a quantized module or a hook keeps the modules' own forward, with the half-layout rotation."""
        return all(plain_module(projection, nn.Linear) for projection in (self.q_proj, self.k_proj))

    @staticmethod
    def projection_rows(projection: nn.Linear, hidden_states: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """`projection(hidden_states)[..., rows]`, computed with the rows of the weight and bias (no copy of q or k)."""
        weight, bias = projection.weight.index_select(0, rows), projection.bias.index_select(0, rows)
        return nn.functional.linear(hidden_states, weight, bias)


class PosAttnMLP(nn.Module):
    def __init__(self, config: PosAttnConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation_fn = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_fn(self.fc1(hidden_states)))


class PosAttnEncoderLayer(GradientCheckpointingLayer):
    """Pre-norm transformer layer: `x + Attn(LN(x))`, then `x + MLP(LN(x))`."""

    def __init__(self, config: PosAttnConfig, layer_idx: int):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = PosAttnAttention(config, layer_idx)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = PosAttnMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_embeddings: RotaryAngles | None = None,
        score_mod: Callable | None = None,
        attention_bias: QueryBlockedBias | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        # asked before the sublayers run (a hook that removes itself when it fires is gone by the time of the sum) and
        # again at the sum (a hook installed while they ran)
        attention_unseen, mlp_unseen = self.attention_output_unseen(), self.mlp_output_unseen()
        attn_output, _ = self.self_attn(
            self.layer_norm1(hidden_states),
            attention_mask=attention_mask,
            position_embeddings=position_embeddings,
            score_mod=score_mod,
            attention_bias=attention_bias,
            **kwargs,
        )
        attention_unseen = attention_unseen and self.attention_output_unseen()
        hidden_states = add_residual(hidden_states, self.dropout(attn_output), attention_unseen)
        mlp_output = self.dropout(self.mlp(self.layer_norm2(hidden_states)))
        return add_residual(hidden_states, mlp_output, mlp_unseen and self.mlp_output_unseen())

    def attention_output_unseen(self) -> bool:
        """Whether the attention's output reaches nothing but this layer. transformers' output capture counts as a hook:
        once a call asked for `output_hidden_states` or `output_attentions` its hooks stay on the attention modules, and
        the sums go out of place from then on."""
        return self.output_unseen(self.self_attn, PosAttnAttention, "o_proj")

    def mlp_output_unseen(self) -> bool:
        """Whether the MLP's output reaches nothing but this layer."""
        return self.output_unseen(self.mlp, PosAttnMLP, "fc2")

    def output_unseen(self, sublayer: nn.Module, kind: type[nn.Module], projection: str) -> bool:
        """The sublayer, its output projection (the attribute `projection`, read only once the sublayer is known to be a
        `kind`: a replacement module need not have one) and the dropout are plain modules (`plain_module`): no hook or
        wrapper sees the sublayer's output on its way to the residual sum."""
        return (
            plain_module(sublayer, kind)
            and plain_module(getattr(sublayer, projection), nn.Linear)
            and plain_module(self.dropout, nn.Dropout)
        )


def add_residual(residual: torch.Tensor, update: torch.Tensor, update_unseen: bool) -> torch.Tensor:
    """`residual + update`, written into `update` where that is a temporary nothing else sees (`update_unseen`), of the
    residual's dtype (under autocast the update may be in half precision: the sum is in the residual's), and autograd
    records nothing (inference). The sum then takes no fresh `(B, L, H)` block, which on CPU is mostly the first touch
    of its pages wherever the allocator has handed freed memory back (glibc does, between forwards). Bitwise the same
    sum (addition commutes). Not seen by the test of `update_unseen`: a hook both added and removed within one
    sublayer call, a `forward` patched on the class rather than the instance."""
    in_place = (
        update_unseen
        and update.dtype == residual.dtype
        and not (torch.is_grad_enabled() and update.requires_grad)
    )
    return update.add_(residual) if in_place else residual + update
