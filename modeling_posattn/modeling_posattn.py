"""PyTorch PosAttn: a multimodal transformer encoder whose selling point is its positional encodings."""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .configuration_posattn import PosAttnConfig
from .stems import build_stem
from .positional_encodings import (
    ABSOLUTE_POSITION_ENCODINGS,
    POSITION_FUSIONS,
    RELATIVE_POSITION_ENCODINGS,
    ConditionalPositionEncoding,
    MultiScalePositionEncoding,
    TokenPositions,
    apply_rotary_pos_emb,
    default_position_ids,
    default_timestamps,
    dense_attention_bias,
    flex_score_mod,
    modality_one_hot,
)


@dataclass
class PosAttnModelOutput(BaseModelOutputWithPooling):
    r"""
    pooler_output (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
        Mean of the real tokens' last hidden states, or the CLS token's, by `config.pooling`.
    modality_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
        For each position of `last_hidden_state`, the index of its modality in `config.modality_names`; -1 for padding
        and for the CLS token. `last_hidden_state[modality_ids == config.modality_names.index("audio")]` are the audio
        tokens.
    """

    modality_ids: torch.LongTensor | None = None


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
):
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


def flex_attention_with_score_mod(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: None,
    scaling: float,
    score_mod: Callable,
    dropout: float = 0.0,
    **kwargs,
):
    """FlexAttention with the position bias computed inside the kernel by `score_mod`: no L x L tensor."""
    from transformers.integrations.flex_attention import compile_friendly_flex_attention

    if dropout > 0:
        raise ValueError("`flex_attention` does not support attention dropout: set `attention_dropout=0.0`.")
    if query.device.type == "cpu" and torch.is_grad_enabled() and query.requires_grad:
        raise ValueError(
            "torch has no FlexAttention backward on CPU: train on CPU with attn_implementation='sdpa' (the bias is then "
            "a dense float mask), or run flex on a GPU."
        )
    attn_output = compile_friendly_flex_attention(
        query, key, value, score_mod=score_mod, scale=scaling, training=module.training
    )
    return attn_output.transpose(1, 2).contiguous(), None


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
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        score_mod: Callable | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        if position_embeddings is not None:
            query, key = apply_rotary_pos_emb(query, key, *position_embeddings)

        if score_mod is not None:
            attention_interface: Callable = flex_attention_with_score_mod
            kwargs["score_mod"] = score_mod
        else:
            attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
                self.config._attn_implementation, eager_attention_forward
            )
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
        attn_output = self.o_proj(attn_output.reshape(*input_shape, -1).contiguous())
        return attn_output, attn_weights


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
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        score_mod: Callable | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        attn_output, _ = self.self_attn(
            self.layer_norm1(hidden_states),
            attention_mask=attention_mask,
            position_embeddings=position_embeddings,
            score_mod=score_mod,
            **kwargs,
        )
        hidden_states = hidden_states + self.dropout(attn_output)
        return hidden_states + self.dropout(self.mlp(self.layer_norm2(hidden_states)))


class PosAttnEmbeddings(nn.Module):
    r"""Content (each modality's stem, or token embeddings) + modality embedding, fused with the absolute encoding.

    With `config.unit_scale_embeddings`, content and position meet at the same scale whatever the stem, the encoding
    or its init: $c = \gamma_m \odot \mathrm{LN}(\mathrm{stem}_m(x)) + \beta_m$ (a LayerNorm per modality, no
    statistic across tokens) and $p = g \odot \mathrm{RMSNorm}(\mathrm{PE})$, both of RMS 1 at init. Without it,
    an std-0.02 Linear on standardised inputs gives content of RMS ~0.1 against 0.71 for a sinusoid, so position
    outweighs content ~7x at init (and a learned table starts ~5x below content): the encodings would not be compared on
    equal footing. TST multiplies content by sqrt(d) for the same reason (Zerveas et al., 2021).
    """

    def __init__(self, config: PosAttnConfig):
        super().__init__()
        self.modality_names = config.modality_names
        self.content = nn.ModuleList(
            build_stem(spec, config.hidden_size, eps=config.layer_norm_eps, act=config.hidden_act)
            if spec.get("input_dim") is not None
            else nn.Embedding(spec["vocab_size"], config.hidden_size)
            for spec in map(config.modality_spec, config.modality_names)
        )
        self.modality_embedding = nn.Embedding(config.num_modalities, config.hidden_size)
        self.unit_scale = config.unit_scale_embeddings
        self.layer_norm_eps = config.layer_norm_eps
        if self.unit_scale:
            # The LayerNorm's affine per modality, gathered by modality id: one normalisation over the packed batch.
            self.content_norm_weight = nn.Parameter(torch.ones(config.num_modalities, config.hidden_size))
            self.content_norm_bias = nn.Parameter(torch.zeros(config.num_modalities, config.hidden_size))
        encoding_class = ABSOLUTE_POSITION_ENCODINGS[config.absolute_position_encoding]
        self.position_encoding = encoding_class(config) if encoding_class is not None else None
        self.fusion = POSITION_FUSIONS[config.position_fusion](config) if encoding_class is not None else None
        self.encoding_norm = (
            nn.RMSNorm(config.hidden_size, eps=config.layer_norm_eps)
            if self.unit_scale and encoding_class is not None
            else None
        )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def embed_content(
        self, input_values: torch.Tensor | None, input_ids: torch.Tensor | None, positions: TokenPositions
    ) -> torch.Tensor:
        """`(B, L, H)`: every token's stem output (or token embedding), normalised per modality when `unit_scale`."""
        modality_ids = positions.modality_ids
        weight = self.modality_embedding.weight
        content = weight.new_zeros(*modality_ids.shape, weight.shape[-1])
        for index, module in enumerate(self.content):
            selected = (modality_ids == index) & positions.mask
            if isinstance(module, nn.Embedding):
                if input_ids is not None:
                    content[selected] = module(input_ids[selected])
            elif input_values is not None:
                # Stems run over the whole packed sequence and zero what is not theirs: no boolean indexing.
                content = content + module(input_values.to(weight.dtype), selected)
        if self.unit_scale:
            content = nn.functional.layer_norm(content, content.shape[-1:], eps=self.layer_norm_eps)
            content = content * self.content_norm_weight[modality_ids] + self.content_norm_bias[modality_ids]
        return content

    def forward(
        self, input_values: torch.Tensor | None, input_ids: torch.Tensor | None, positions: TokenPositions
    ) -> torch.Tensor:
        modality_ids = positions.modality_ids
        hidden_states = self.embed_content(input_values, input_ids, positions) + self.modality_embedding(modality_ids)
        if self.position_encoding is not None:
            encoding = self.position_encoding(hidden_states, positions)
            if self.encoding_norm is not None:
                encoding = self.encoding_norm(encoding)
            hidden_states = self.fusion(hidden_states, encoding, modality_ids)
        return self.dropout(hidden_states)


def resolve_token_positions(
    config: PosAttnConfig,
    input_values: torch.Tensor | None,
    input_ids: torch.Tensor | None,
    modality_ids: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    timestamps: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
) -> TokenPositions:
    """Validate packed inputs (`ValueError` naming the modality and the problem) and derive where every token sits."""
    reference = input_values if input_values is not None else input_ids
    if reference is None:
        raise ValueError("Pass `input_values` (feature modalities) and/or `input_ids` (token modalities).")
    shape, device = reference.shape[:2], reference.device
    if modality_ids is None:
        if config.num_modalities > 1:
            raise ValueError(f"`modality_ids` is required with several modalities {config.modality_names}.")
        modality_ids = torch.zeros(shape, dtype=torch.long, device=device)
    if tuple(modality_ids.shape) != tuple(shape):
        raise ValueError(f"`modality_ids` has shape {tuple(modality_ids.shape)}, expected {tuple(shape)}.")
    mask = torch.ones(shape, dtype=torch.bool, device=device) if attention_mask is None else attention_mask.bool()
    modality_ids = modality_ids.long()
    empty_rows = (~mask.any(dim=1)).nonzero().flatten()
    if empty_rows.numel():
        raise ValueError(
            f"Sample(s) {empty_rows.tolist()} have no tokens at all (`attention_mask` is all zeros): attention over "
            "an empty set is undefined. Drop these samples before calling the model."
        )
    out_of_range = mask & ((modality_ids < 0) | (modality_ids >= config.num_modalities))
    if out_of_range.any():
        raise ValueError(
            f"`modality_ids` holds {int(modality_ids[out_of_range][0])}, outside 0..{config.num_modalities - 1} "
            f"(modalities {config.modality_names})."
        )
    modality_ids = modality_ids.masked_fill(~mask, 0)
    modality_counts = modality_one_hot(modality_ids, mask, config.num_modalities).sum(dim=1)  # (B, M) real tokens
    present = modality_counts.sum(dim=0) > 0
    for index, name in enumerate(config.modality_names):
        if not present[index]:
            continue
        spec, selected = config.modality_spec(name), mask & (modality_ids == index)
        if spec.get("input_dim") is not None:
            if input_values is None or input_values.dim() != 3 or input_values.shape[-1] < spec["input_dim"]:
                got = None if input_values is None else tuple(input_values.shape)
                raise ValueError(
                    f"Modality '{name}': `input_values` must be (batch, seq_len, >= {spec['input_dim']}), got {got}."
                )
            if not torch.isfinite(input_values[selected][:, : spec["input_dim"]]).all():
                raise ValueError(f"Modality '{name}': `input_values` holds NaN or Inf.")
        else:
            if input_ids is None or input_ids.is_floating_point():
                raise ValueError(f"Modality '{name}': `input_ids` must be an integer tensor of token ids.")
            ids = input_ids[selected]
            if ((ids < 0) | (ids >= spec["vocab_size"])).any():
                raise ValueError(f"Modality '{name}': `input_ids` must lie in [0, {spec['vocab_size']}).")
    if position_ids is None:
        position_ids = default_position_ids(modality_ids, mask, config.num_modalities)
    position_ids = position_ids.long().masked_fill(~mask, 0)
    if timestamps is None:
        timestamps = default_timestamps(position_ids, modality_ids, mask, config.sampling_rates)
    elif not torch.isfinite(timestamps[mask]).all():
        raise ValueError("`timestamps` holds NaN or Inf.")
    timestamps = timestamps.float().masked_fill(~mask, 0.0)
    lengths = modality_counts.gather(1, modality_ids)
    return TokenPositions(position_ids, timestamps, modality_ids, mask, lengths)


class PosAttnPreTrainedModel(PreTrainedModel):
    config: PosAttnConfig
    config_class = PosAttnConfig
    base_model_prefix = "posattn"
    main_input_name = "input_values"
    supports_gradient_checkpointing = True
    _no_split_modules = ["PosAttnEncoderLayer"]
    _supports_sdpa = True
    _supports_flex_attn = True
    _can_record_outputs = {"hidden_states": PosAttnEncoderLayer, "attentions": PosAttnAttention}

    def resize_token_embeddings(self, *args, **kwargs):
        # transformers' resizing updates `config.vocab_size`, but a PosAttn vocabulary lives in the modality spec.
        raise NotImplementedError(
            "PosAttn keeps each token modality's vocabulary in `config.modalities[name]['vocab_size']`: change it there "
            "and build a new model (loading old weights with `ignore_mismatched_sizes=True`)."
        )

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        super()._init_weights(module)
        if hasattr(module, "initial_buffers"):
            for name, value in module.initial_buffers().items():
                init.copy_(getattr(module, name), value)
        if isinstance(module, ConditionalPositionEncoding):
            init.normal_(module.weight, std=self.config.initializer_range)
            init.zeros_(module.bias)
        elif isinstance(module, MultiScalePositionEncoding):
            init.ones_(module.gain)
        elif isinstance(module, PosAttnModel) and module.cls_token is not None:
            init.normal_(module.cls_token, std=self.config.initializer_range)
        elif isinstance(module, PosAttnEmbeddings) and module.unit_scale:
            init.ones_(module.content_norm_weight)
            init.zeros_(module.content_norm_bias)


class PosAttnModel(PosAttnPreTrainedModel):
    r"""
    The bare PosAttn encoder. Inputs use a *packed token layout*: each sample is one sequence holding the tokens of all
    its modalities (in `config.modality_names` order, as `PosAttnProcessor` lays them out), then padding.

    Args (of `forward`):
        input_values (`(batch, seq_len, max_feature_dim)` float): features of feature-modality tokens, zero-padded to the
            widest modality; ignored at token-modality positions.
        input_ids (`(batch, seq_len)` int): ids of token-modality tokens; ignored elsewhere.
        modality_ids (`(batch, seq_len)` int): index of each token's modality in `config.modality_names`.
        position_ids (`(batch, seq_len)` int, *optional*): index within the modality; derived when omitted.
        timestamps (`(batch, seq_len)` float, *optional*): seconds; derived from `sampling_rate` when omitted.
        attention_mask (`(batch, seq_len)`, *optional*): 1 for real tokens, 0 for padding.
    """

    def __init__(self, config: PosAttnConfig):
        super().__init__(config)
        self.embeddings = PosAttnEmbeddings(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if config.pooling == "cls" else None
        relative_class = RELATIVE_POSITION_ENCODINGS[config.relative_position_encoding]
        self.relative_position_encoding = relative_class(config) if relative_class is not None else None
        self.layers = nn.ModuleList(PosAttnEncoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def _input_embeddings_index(self) -> int:
        specs = map(self.config.modality_spec, self.config.modality_names)
        return next((index for index, spec in enumerate(specs) if spec.get("vocab_size") is not None), 0)

    def get_input_embeddings(self) -> nn.Module:
        """The token embedding table of the first token modality (the one `input_ids` index), as transformers expects;
        for a model without a token modality, the first modality's feature projection (as vision models return their
        patch embedding)."""
        return self.embeddings.content[self._input_embeddings_index()]

    def set_input_embeddings(self, value: nn.Module):
        self.embeddings.content[self._input_embeddings_index()] = value

    def token_positions(self, input_values, input_ids, modality_ids, position_ids, timestamps, attention_mask) -> TokenPositions:
        return resolve_token_positions(self.config, input_values, input_ids, modality_ids, position_ids, timestamps, attention_mask)

    def key_padding_mask(self, hidden_states: torch.Tensor, mask: torch.Tensor):
        """The mask for encodings that need no score bias. For eager and sdpa it is `(B, 1, 1, L)` and broadcast over
        queries, so no L x L tensor exists (transformers' `create_bidirectional_mask` expands it to `(B, 1, L, L)`);
        None when nothing is padded, which keeps SDPA's fastest kernels. Flex gets transformers' BlockMask."""
        implementation = self.config._attn_implementation
        if implementation not in ("eager", "sdpa"):
            return create_bidirectional_mask(self.config, hidden_states, mask.long())
        if mask.all():
            return None
        if implementation == "sdpa":
            return mask[:, None, None, :]
        additive = torch.zeros(mask.shape, dtype=hidden_states.dtype, device=mask.device)
        return additive.masked_fill(~mask, torch.finfo(hidden_states.dtype).min)[:, None, None, :]

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        input_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        modality_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        timestamps: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> PosAttnModelOutput:
        positions = self.token_positions(input_values, input_ids, modality_ids, position_ids, timestamps, attention_mask)
        hidden_states = self.embeddings(input_values, input_ids, positions)
        output_modality_ids = positions.modality_ids.masked_fill(~positions.mask, -1)
        if self.cls_token is not None:
            hidden_states = torch.cat((self.cls_token.expand(hidden_states.shape[0], -1, -1), hidden_states), dim=1)
            positions = prepend_token(positions)
            output_modality_ids = nn.functional.pad(output_modality_ids, (1, 0), value=-1)

        encoding, mask, score_mod, position_embeddings = self.relative_position_encoding, None, None, None
        if encoding is None or encoding.kind == "rotary":
            mask = self.key_padding_mask(hidden_states, positions.mask)
            if encoding is not None:
                position_embeddings = encoding(hidden_states, positions)
        elif self.config._attn_implementation == "flex_attention":
            score_mod = flex_score_mod(encoding, positions)
        else:
            mask = dense_attention_bias(encoding, positions, hidden_states.dtype)

        for layer in self.layers:
            hidden_states = layer(
                hidden_states, mask, position_embeddings=position_embeddings, score_mod=score_mod, **kwargs
            )
        last_hidden_state = self.norm(hidden_states)
        if self.cls_token is not None:
            pooled = last_hidden_state[:, 0]
        else:
            weights = positions.mask.unsqueeze(-1).to(last_hidden_state.dtype)
            pooled = (last_hidden_state * weights).sum(1) / weights.sum(1)
        return PosAttnModelOutput(
            last_hidden_state=last_hidden_state, pooler_output=pooled, modality_ids=output_modality_ids
        )


def prepend_token(positions: TokenPositions) -> TokenPositions:
    """Room for a CLS token at index 0, time 0 (it carries no modality; its modality id is unused)."""

    def pad(tensor, value):
        return nn.functional.pad(tensor, (1, 0), value=value)

    return TokenPositions(
        position_ids=pad(positions.position_ids, 0),
        timestamps=pad(positions.timestamps, 0.0),
        modality_ids=pad(positions.modality_ids, 0),
        mask=pad(positions.mask, True),
        modality_lengths=pad(positions.modality_lengths, 1),
    )


class PosAttnForSequenceClassification(PosAttnPreTrainedModel):
    """PosAttn with a linear head on the pooled output: single-label, multi-label or regression by `problem_type`."""

    # The classification loss is a mean over the batch, not a sum to be normalised by Trainer's token count.
    accepts_loss_kwargs = False

    def __init__(self, config: PosAttnConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.posattn = PosAttnModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        modality_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        timestamps: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        outputs = self.posattn(
            input_values=input_values,
            input_ids=input_ids,
            modality_ids=modality_ids,
            position_ids=position_ids,
            timestamps=timestamps,
            attention_mask=attention_mask,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = None
        if labels is not None:
            loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


__all__ = ["PosAttnModel", "PosAttnForSequenceClassification", "PosAttnPreTrainedModel"]
