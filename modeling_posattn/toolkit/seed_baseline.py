"""A classifier built from the seed's reference block, for ablations only (not part of the model, never saved for Hub).

Same content embeddings, pre-norm residual layout, MLP, pooling and head as `PosAttnForSequenceClassification` (with
`absolute_position_encoding="none"`), but every attention sub-layer is the seed's `MultiModalSelfAttention`, which adds
the seed's `PositionalEncoding` to its input and runs an explicit softmax. So the only differences from our `none`
baseline are the seed's attention and its (batch-indexed, hence position-blind) encoding. The seed block has no padding
mask: it runs only on unpadded batches (e.g. NATOPS, whose series all have 51 steps), and says so otherwise.
"""

import dataclasses

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from ..layers_posattn import PosAttnMLP
from ..modeling_posattn import (
    PosAttnEmbeddings,
    PosAttnPreTrainedModel,
    features_as_float,
    resolve_token_positions,
)
from .seed_reference import MultiModalSelfAttention


class SeedReferenceLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = MultiModalSelfAttention(config.hidden_size, config.num_attention_heads)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = PosAttnMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.dropout(self.self_attn(self.layer_norm1(hidden_states)))
        return hidden_states + self.dropout(self.mlp(self.layer_norm2(hidden_states)))


class SeedReferenceForSequenceClassification(PosAttnPreTrainedModel):
    """Mean-pooled classifier over layers of the seed's attention block (see module docstring)."""

    accepts_loss_kwargs = False
    _can_record_outputs = {}

    def __init__(self, config):
        config = dataclasses.replace(config) if dataclasses.is_dataclass(config) else config
        config.absolute_position_encoding, config.relative_position_encoding, config.pooling = "none", "none", "mean"
        super().__init__(config)
        self.embeddings = PosAttnEmbeddings(config)
        self.layers = nn.ModuleList(SeedReferenceLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_values=None, input_ids=None, modality_ids=None, position_ids=None, timestamps=None,
                attention_mask=None, labels=None, **kwargs) -> SequenceClassifierOutput:
        if attention_mask is not None and not attention_mask.bool().all():
            raise ValueError("The seed reference block has no padding mask: it only runs on batches without padding.")
        positions = resolve_token_positions(self.config, input_values, input_ids, modality_ids, position_ids, timestamps, attention_mask)
        hidden_states = self.embeddings(features_as_float(input_values), input_ids, positions)
        for layer in self.layers:
            hidden_states = layer(hidden_states)
        logits = self.classifier(self.norm(hidden_states).mean(dim=1))
        loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
