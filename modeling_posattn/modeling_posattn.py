"""PyTorch PosAttn: a multimodal transformer encoder whose selling point is its positional encodings."""

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn

from transformers import initialization as init
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.modeling_utils import PreTrainedModel
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .configuration_posattn import PosAttnConfig
from .masking_posattn import compute_mask_positions
from .embeddings_posattn import PosAttnEmbeddings
from .stems import token_feature_dim
from .validation_posattn import (  # noqa: F401  (re-exported: the model's input checks live there)
    DENSE_ATTENTION_MAX_BYTES,
    IGNORE_INDEX,
    check_dense_bias_size,
    classification_loss,
    features_as_float,
    resolve_token_positions,
    validate_labels,
    values_checks_skipped,
)
from .bias_posattn import QueryBlockedBias, flex_score_mod
from .split_attention_posattn import score_bias_for
from .positional_encodings import (
    RELATIVE_POSITION_ENCODINGS,
    ConditionalPositionEncoding,
    MultiScalePositionEncoding,
    TokenPositions,
)
from .layers_posattn import PosAttnAttention, PosAttnEncoderLayer, PosAttnMLP  # noqa: F401  (its former home)
from .rotary_posattn import RotaryAngles, interleaved_rows, rotation_phasors, signed_sin


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

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' loading, with a corrupted or truncated weights file reported as an `OSError` naming the file
        (safetensors' own error names neither the file nor the checkpoint)."""
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except SafetensorError as error:
            folder = Path(str(pretrained_model_name_or_path))
            weights = sorted(map(str, folder.glob("*.safetensors"))) if folder.is_dir() else []
            where = ", ".join(weights) or f"the .safetensors weights of '{pretrained_model_name_or_path}'"
            raise OSError(
                f"Cannot read {where}: {error}. The file is corrupted or truncated (an interrupted download or copy?): "
                "download or save the checkpoint again."
            ) from error

    def resize_token_embeddings(self, *args, **kwargs):
        # transformers' resizing updates `config.vocab_size`, but a PosAttn vocabulary lives in the modality spec.
        raise NotImplementedError(
            "PosAttn keeps each token modality's vocabulary in `config.modalities[name]['vocab_size']`: change it there "
            "and build a new model (loading old weights with `ignore_mismatched_sizes=True`)."
        )

    @torch.no_grad()
    def validate_inputs(
        self,
        input_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        modality_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        timestamps: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> None:
        """The entry checks of `forward`, run eagerly, with the same errors (one host sync). An eager forward runs them
        itself; a model under `torch.compile` or `torch.export` checks shapes and dtypes only (value checks would
        break the graph), so call this on a batch before handing it to a compiled or exported model, e.g.
        `model.validate_inputs(**batch); compiled(**batch)`."""
        resolve_token_positions(self.config, input_values, input_ids, modality_ids, position_ids, timestamps, attention_mask)
        if labels is not None and isinstance(self, PosAttnForSequenceClassification):
            validate_labels(labels, self.problem_type, self.num_labels)

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
        elif isinstance(module, PosAttnModel):
            if module.cls_token is not None:
                init.normal_(module.cls_token, std=self.config.initializer_range)
            if module.mask_embedding is not None:
                init.normal_(module.mask_embedding, std=self.config.initializer_range)
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
        mask_positions (`(batch, seq_len)` bool, *optional*): tokens whose content is replaced by their modality's
            learned mask embedding (pretraining); needs a model built with `add_mask_embedding=True`.

    `add_mask_embedding` (constructor): add the per-modality mask embedding that `PosAttnForPreTraining` trains. A plain
    encoder has none, so loading a pretraining checkpoint into it reports `posattn.mask_embedding` as unused.
    """

    def __init__(self, config: PosAttnConfig, add_mask_embedding: bool = False):
        super().__init__(config)
        self.embeddings = PosAttnEmbeddings(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if config.pooling == "cls" else None
        self.mask_embedding = (
            nn.Parameter(torch.zeros(config.num_modalities, config.hidden_size)) if add_mask_embedding else None
        )
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

    def rotary_inputs(self, cos: torch.Tensor, sin: torch.Tensor) -> RotaryAngles:
        """What every layer's attention rotates q and k with: the half layout's `(cos, signed sin)`, plus in eager
        float32/64 the phasors and interleaved rows of the complex product (tracing keeps the half layout:
        `torch.compile` fuses it, and ONNX has no complex type). Both give the same scores (tests/test_speed.py)."""
        angles = RotaryAngles(cos, signed_sin(sin))
        if cos.dtype in (torch.float32, torch.float64) and not values_checks_skipped():
            angles.phasors = rotation_phasors(cos, sin)
            angles.rows = interleaved_rows(self.config.num_attention_heads, self.config.head_dim, cos.device)
        return angles

    def key_padding_mask(self, hidden_states: torch.Tensor, mask: torch.Tensor, padded: bool = True):
        """The mask for encodings that need no score bias. For eager and sdpa it is `(B, 1, 1, L)` and broadcast over
        queries, so no L x L tensor exists (transformers' `create_bidirectional_mask` expands it to `(B, 1, L, L)`).
        `padded=False` (no `attention_mask`, or the eager value checks found no padding in their one host sync) gives
        None, which keeps SDPA's fastest kernels (as transformers' `mask.all()` check does for BERT, with no sync of its
        own); while tracing the mask is always kept (no data-dependent branch, no graph break under `torch.compile`).
        Flex gets transformers' BlockMask."""
        implementation = self.config._attn_implementation
        if implementation not in ("eager", "sdpa"):
            return create_bidirectional_mask(self.config, hidden_states, mask.long())
        if not padded:
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
        mask_positions: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> PosAttnModelOutput:
        positions = self.token_positions(input_values, input_ids, modality_ids, position_ids, timestamps, attention_mask)
        if mask_positions is not None:
            if self.mask_embedding is None:
                raise ValueError("`mask_positions` needs a mask embedding: use PosAttnForPreTraining (or "
                                 "PosAttnModel(config, add_mask_embedding=True)).")
            if tuple(mask_positions.shape) != tuple(positions.mask.shape):
                raise ValueError(f"`mask_positions` has shape {tuple(mask_positions.shape)}, expected "
                                 f"{tuple(positions.mask.shape)} (batch, seq_len).")
            mask_positions = mask_positions.bool() & positions.mask
        hidden_states = self.embeddings(features_as_float(input_values), input_ids, positions, mask_positions, self.mask_embedding)
        output_modality_ids = positions.modality_ids.masked_fill(~positions.mask, -1)
        if self.cls_token is not None:
            hidden_states = torch.cat((self.cls_token.expand(hidden_states.shape[0], -1, -1), hidden_states), dim=1)
            positions = positions.with_leading_token()
            output_modality_ids = nn.functional.pad(output_modality_ids, (1, 0), value=-1)

        encoding, mask, score_mod, position_embeddings = self.relative_position_encoding, None, None, None
        attention_bias = None
        if self.config._attn_implementation == "eager":  # eager materialises (B, heads, L, L) attention weights
            check_dense_bias_size(self.config, *positions.mask.shape, hidden_states.dtype)
        # the kind from the registry, not the module: a wrapper or an adapter around the encoding need not carry it
        if encoding is None or RELATIVE_POSITION_ENCODINGS[self.config.relative_position_encoding].kind == "rotary":
            padded = attention_mask is not None and positions.padded is not False
            mask = self.key_padding_mask(hidden_states, positions.mask, padded=padded)
            if encoding is not None:
                cos, sin = encoding(hidden_states, positions)
                position_embeddings = self.rotary_inputs(cos, sin)
        elif self.config._attn_implementation == "flex_attention":
            score_mod = flex_score_mod(encoding, positions)
        else:
            # time-split from `time_split_min_length` tokens (CPU sdpa), else dense (B, heads, L, L) while it is small
            # and blocks of query rows past `dense_bias_max_bytes`: memory linear in L, so no size check is needed here
            dropout = self.config.attention_dropout if self.training else 0.0  # what the layers will use
            mask = score_bias_for(encoding, positions, hidden_states.dtype, self.config, dropout)
            if isinstance(mask, QueryBlockedBias):
                mask, attention_bias = None, mask

        for layer in self.layers:
            hidden_states = layer(
                hidden_states,
                mask,
                position_embeddings=position_embeddings,
                score_mod=score_mod,
                attention_bias=attention_bias,
                **kwargs,
            )
        last_hidden_state = self.norm(hidden_states)
        if self.cls_token is not None:
            pooled = last_hidden_state[:, 0]
        else:
            pooled = positions.mean_over_real_tokens(last_hidden_state)
        return PosAttnModelOutput(
            last_hidden_state=last_hidden_state, pooler_output=pooled, modality_ids=output_modality_ids
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

    @property
    def problem_type(self) -> str:
        """`config.problem_type`, or the one its `num_labels` implies (1: regression, more: single-label). Decided from
        the config, never from a batch: transformers' default loss infers it from the first batch's label dtype and
        writes it into the config for good, so one batch of float labels would turn a classifier multi-label."""
        return self.config.problem_type or ("regression" if self.num_labels == 1 else "single_label_classification")

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
        if labels is not None:
            labels = validate_labels(labels, self.problem_type, self.num_labels)
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
            loss = classification_loss(logits, labels, self.problem_type)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


@dataclass
class PosAttnForPreTrainingOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`):
        Mean over the modalities that have masked tokens in the batch of their loss (MSE for feature modalities,
        cross-entropy for token modalities); a modality without a masked real token is left out, never NaN.
    modality_losses (`torch.FloatTensor` of shape `(num_modalities,)`):
        Each modality's loss in `config.modality_names` order; 0 where `masked_token_counts` is 0 (skipped).
    masked_token_counts (`torch.LongTensor` of shape `(num_modalities,)`):
        Masked real tokens of each modality in the batch: what each loss averages over.
    reconstruction (`torch.FloatTensor` of shape `(batch_size, sequence_length, max_feature_dim)`):
        Every token's predicted (normalised) features, packed like `input_values` (its modality's `stride * input_dim`
        first columns, zeros after); zeros at token-modality positions. None without a feature modality.
    prediction_logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, max_vocab_size)`):
        Every token's logits over its token modality's vocabulary (the dtype's minimum past it). None without a
        token modality.
    mask_positions (`torch.BoolTensor` of shape `(batch_size, sequence_length)`):
        The masked tokens (given or sampled).
    """

    loss: torch.FloatTensor | None = None
    modality_losses: torch.FloatTensor | None = None
    masked_token_counts: torch.LongTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    prediction_logits: torch.FloatTensor | None = None
    mask_positions: torch.BoolTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class PosAttnForPreTraining(PosAttnPreTrainedModel):
    """PosAttn with a masked-reconstruction objective for self-supervised pretraining.

    Contiguous spans of tokens (`config.mask_mode`: per modality, or one time window across all modalities; ratio and
    span from `config.mask_ratio` / `config.mask_span_length`, see `masking_posattn.py`) have their content replaced by
    a learned per-modality mask embedding; a linear head per modality then predicts, at the masked real tokens only,
    the features (MSE against the inputs as given, which `PosAttnProcessor` has normalised per channel; Zerveas et al.
    2021, "A Transformer-based Framework for Multivariate Time Series Representation Learning") or the token id
    (cross-entropy, BERT's masked-token prediction). Masks are sampled in `forward` unless `mask_positions` is given: at
    random in training, from a fixed seed in eval mode so that validation losses are comparable across epochs.

    Fine-tune the encoder with `PosAttnForSequenceClassification.from_pretrained(<this checkpoint>)`: the encoder loads,
    the classifier is initialised fresh, the mask embedding and the prediction heads are reported unused.
    """

    # The loss is a mean over masked tokens per modality, not a sum for Trainer to normalise by its token count.
    accepts_loss_kwargs = False
    EVAL_MASK_SEED = 0

    def __init__(self, config: PosAttnConfig):
        super().__init__(config)
        self.posattn = PosAttnModel(config, add_mask_embedding=True)
        self.prediction_heads = nn.ModuleList(
            # A strided stem packs `stride` frames into a token: the head predicts all of them, not just the first.
            nn.Linear(config.hidden_size, token_feature_dim(spec) or spec["vocab_size"])
            for spec in map(config.modality_spec, config.modality_names)
        )
        self.post_init()

    def sample_mask_positions(self, positions: TokenPositions) -> torch.BoolTensor:
        generator = None
        if not self.training:
            generator = torch.Generator(device=positions.mask.device).manual_seed(self.EVAL_MASK_SEED)
        return compute_mask_positions(
            self.config, positions.modality_ids, positions.mask, positions.timestamps, generator=generator
        )

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        modality_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        timestamps: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        mask_positions: torch.Tensor | None = None,
        return_loss: bool = True,
        **kwargs: Unpack[TransformersKwargs],
    ) -> PosAttnForPreTrainingOutput:
        r"""
        mask_positions (`(batch, seq_len)` bool, *optional*): the tokens to mask and predict (padding is ignored);
            sampled by `config.mask_mode` when omitted.
        return_loss (`bool`): compute the loss (default; it also tells Trainer that this model returns a loss without
            labels, so that evaluation reports `eval_loss`).
        """
        positions = resolve_token_positions(
            self.config, input_values, input_ids, modality_ids, position_ids, timestamps, attention_mask
        )
        if mask_positions is None:
            mask_positions = self.sample_mask_positions(positions)
        elif tuple(mask_positions.shape) != tuple(positions.mask.shape):
            raise ValueError(f"`mask_positions` has shape {tuple(mask_positions.shape)}, expected "
                             f"{tuple(positions.mask.shape)} (batch, seq_len).")
        mask_positions = mask_positions.bool() & positions.mask
        # The encoder never sees a masked token's input, not even through a stem that mixes neighbouring frames.
        hidden_inputs = mask_positions[..., None]
        outputs = self.posattn(
            input_values=None if input_values is None else input_values.masked_fill(hidden_inputs, 0.0),
            input_ids=None if input_ids is None else input_ids.masked_fill(mask_positions, 0),
            modality_ids=positions.modality_ids,
            position_ids=positions.position_ids,
            timestamps=positions.timestamps,
            attention_mask=positions.mask,
            mask_positions=mask_positions,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        if self.posattn.cls_token is not None:
            hidden_states = hidden_states[:, 1:]

        losses, counts, reconstruction, logits = [], [], None, None
        for index, (name, head) in enumerate(zip(self.config.modality_names, self.prediction_heads)):
            selected = mask_positions & (positions.modality_ids == index)
            count = selected.sum()
            prediction = head(hidden_states)
            if self.config.modality_spec(name).get("input_dim") is not None:
                width = prediction.shape[-1]
                if reconstruction is None:
                    reconstruction = hidden_states.new_zeros(*hidden_states.shape[:2], self.config.max_feature_dim)
                is_modality = (positions.modality_ids == index) & positions.mask
                reconstruction[..., :width] = torch.where(is_modality[..., None], prediction, reconstruction[..., :width])
                if return_loss and input_values is None:  # the entry checks allow that only with no token of it
                    losses.append(count.new_zeros((), dtype=torch.float32))
                elif return_loss:
                    # targets only at selected tokens: padding and other modalities' columns may hold anything, NaN
                    # included, which a product with `selected` would carry into the loss and every gradient
                    target = torch.where(selected[..., None], input_values[..., :width].float(), 0.0)
                    error = (prediction.float() - target).pow(2).mean(dim=-1)
                    losses.append((error * selected).sum() / count.clamp(min=1))
            else:
                vocab = prediction.shape[-1]
                if logits is None:
                    widest = max(spec.get("vocab_size") or 0 for spec in self.config.modalities.values())
                    logits = hidden_states.new_full((*hidden_states.shape[:2], widest), torch.finfo(hidden_states.dtype).min)
                is_modality = (positions.modality_ids == index) & positions.mask
                logits[..., :vocab] = torch.where(is_modality[..., None], prediction, logits[..., :vocab])
                if return_loss and input_ids is None:
                    losses.append(count.new_zeros((), dtype=torch.float32))
                elif return_loss:
                    targets = input_ids.long().masked_fill(~selected, -100)
                    summed = nn.functional.cross_entropy(
                        prediction.flatten(0, 1).float(), targets.flatten(), ignore_index=-100, reduction="sum"
                    )
                    losses.append(summed / count.clamp(min=1))
            counts.append(count)

        loss = modality_losses = None
        masked_token_counts = torch.stack(counts)
        if return_loss:
            # A modality with nothing masked in this batch is left out of the mean (its loss is 0/1 = 0, not 0/0).
            modality_losses = torch.stack(losses)
            present = (masked_token_counts > 0).to(modality_losses.dtype)
            loss = (modality_losses * present).sum() / present.sum().clamp(min=1)
        return PosAttnForPreTrainingOutput(
            loss=loss,
            modality_losses=modality_losses,
            masked_token_counts=masked_token_counts,
            reconstruction=reconstruction,
            prediction_logits=logits,
            mask_positions=mask_positions,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


__all__ = ["PosAttnModel", "PosAttnForSequenceClassification", "PosAttnForPreTraining", "PosAttnPreTrainedModel"]
