#!/usr/bin/env python
"""Export experiment (issue 13, item 6), NOT the package's code path: `torch.export` of PosAttnModel with dynamic batch
and length, after monkeypatching out the two things that block it today: the data-dependent validation in
`resolve_token_positions` (`.nonzero()`, `.any()`, boolean-index gathers) and the boolean-index gather/scatter in
`PosAttnEmbeddings.forward`. Both are replaced by masked dense versions. Run from the repository root:

    PYTHONPATH=$PWD python scripts/try_export.py
"""
import sys, torch
sys.path.insert(0, "tests")  # conftest builders
from conftest import batch_of, build_model, random_samples
import modeling_posattn.modeling_posattn as mp
from modeling_posattn.positional_encodings import TokenPositions, default_position_ids, default_timestamps, modality_one_hot
from torch import nn
torch.set_num_threads(1)

def positions_no_checks(config, input_values, input_ids, modality_ids, position_ids, timestamps, attention_mask):
    mask = attention_mask.bool(); modality_ids = modality_ids.long().masked_fill(~mask, 0)
    counts = modality_one_hot(modality_ids, mask, config.num_modalities).sum(1)
    if position_ids is None: position_ids = default_position_ids(modality_ids, mask, config.num_modalities)
    position_ids = position_ids.long().masked_fill(~mask, 0)
    if timestamps is None: timestamps = default_timestamps(position_ids, modality_ids, mask, config.sampling_rates)
    return TokenPositions(position_ids, timestamps.float().masked_fill(~mask, 0.0), modality_ids, mask, counts.gather(1, modality_ids))

def embeddings_dense(self, input_values, input_ids, positions):
    modality_ids = positions.modality_ids
    content = 0
    for index, module in enumerate(self.content):
        selected = (modality_ids == index).unsqueeze(-1)
        if isinstance(module, nn.Embedding):
            out = module(input_ids.clamp(0, module.num_embeddings - 1))
        else:
            out = module(input_values[..., : module.in_features])
        content = content + out * selected
    hidden = content + self.modality_embedding(modality_ids)
    if self.position_encoding is not None:
        hidden = self.fusion(hidden, self.position_encoding(hidden, positions), modality_ids)
    return self.dropout(hidden)

mp.resolve_token_positions = positions_no_checks
mp.PosAttnEmbeddings.forward = embeddings_dense
inputs = batch_of(random_samples())
inputs2 = batch_of(random_samples(seed=1, lengths=((30, 8, 4), (12, 2, 0), (70, 20, 9))))
for enc in [dict(absolute_position_encoding="none", relative_position_encoding="time_rope"), dict(absolute_position_encoding="none", relative_position_encoding="relative_bias")]:
    model = build_model(attn_implementation="sdpa", **enc)
    L = torch.export.Dim("L", min=2, max=4096); B = torch.export.Dim("B", min=1, max=64)
    shapes = {k: ({0: B, 1: L, 2: None} if v.dim() == 3 else {0: B, 1: L}) for k, v in inputs.items()}
    try:
        ep = torch.export.export(model, args=(), kwargs=dict(inputs), dynamic_shapes=shapes, strict=False)
        for batch in (inputs, inputs2):
            d = (ep.module()(**batch).last_hidden_state - model(**batch).last_hidden_state).abs().max().item()
            print(enc, "export OK, max diff", d)
        try:
            onnx = torch.onnx.export(model, (), kwargs=dict(inputs), dynamo=True, dynamic_shapes=shapes)
            print(enc, "onnx OK")
        except Exception as e:
            print(enc, "onnx FAILED", type(e).__name__, str(e)[:400])
    except Exception as e:
        print(enc, "export FAILED", type(e).__name__, str(e)[:600])
