"""Input validation of PosAttn at the boundary: the packed layout's shapes and dtypes (from metadata), its values (one
combined reduction, one host sync per batch, skipped while torch.compile / torch.export trace), where every token
sits (`resolve_token_positions`), the size of a dense attention tensor, and the labels against the head."""

import math

import torch
from torch import nn

from transformers.utils import is_torchdynamo_compiling

from .configuration_posattn import MAX_FEATURE_MAGNITUDE, PosAttnConfig
from .positional_encodings import TokenPositions, default_position_ids, default_timestamps
from .stems import token_feature_dim


def _check_layout(name: str, tensor: torch.Tensor | None, shape: tuple[int, ...], kinds: str, hint: str = "") -> None:
    """Shape and dtype of one packed input, from metadata only (no device sync). `kinds`: the allowed dtype kinds,
    a subset of "bif" (bool, integer, floating)."""
    if tensor is None:
        return
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(tensor).__name__}.")
    if tuple(tensor.shape) != shape:
        raise ValueError(f"`{name}` has shape {tuple(tensor.shape)}, expected {shape} (batch, seq_len).{hint}")
    kind = "b" if tensor.dtype == torch.bool else "f" if tensor.is_floating_point() else "c" if tensor.is_complex() else "i"
    if kind not in kinds:
        wanted = {"b": "bool", "i": "integer", "f": "floating"}
        raise TypeError(f"`{name}` must be a tensor of dtype {' or '.join(wanted[k] for k in kinds)}, got {tensor.dtype}.")


def resolve_token_positions(
    config: PosAttnConfig,
    input_values: torch.Tensor | None,
    input_ids: torch.Tensor | None,
    modality_ids: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    timestamps: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
) -> TokenPositions:
    """Validate packed inputs and derive where every token sits.

    Every problem raises a `ValueError`/`TypeError` naming the argument (and the modality or sample) before any work.
    Shapes and dtypes are checked from metadata; the checks on values are one reduction and one host sync per batch,
    and only a failing batch pays for the detailed message.

    Timestamps are taken relative to each sample's first real token, in float64, before the float32 cast: every
    relative encoding sees `t_j - t_i` exactly, however late the sample's clock starts (`t0` of 1e6 s and more).
    """
    reference = input_values if input_values is not None else input_ids
    if reference is None:
        raise ValueError("Pass `input_values` (feature modalities) and/or `input_ids` (token modalities).")
    if not isinstance(reference, torch.Tensor) or reference.dim() < 2:
        got = tuple(reference.shape) if isinstance(reference, torch.Tensor) else type(reference).__name__
        name = "input_values" if input_values is not None else "input_ids"
        raise ValueError(f"`{name}` must be a (batch, seq_len{', features' if input_values is not None else ''}) tensor, got {got}.")
    shape, device = tuple(reference.shape[:2]), reference.device
    if 0 in shape:
        raise ValueError(f"Empty batch: inputs have shape {tuple(reference.shape)}; PosAttn needs at least one sample with one token.")
    if input_values is not None:
        width = config.max_feature_dim
        if input_values.dim() != 3 or input_values.shape[-1] < width:
            widest = max(config.modality_names, key=lambda name: config.modality_spec(name).get("input_dim") or 0)
            raise ValueError(
                f"Modality '{widest}': `input_values` must be (batch, seq_len, >= {width}) features, "
                f"got {tuple(input_values.shape)}."
            )
        if input_values.is_complex() or input_values.dtype == torch.bool:
            raise TypeError(f"`input_values` must be a real-valued tensor of features, got {input_values.dtype}.")
    _check_layout("input_ids", input_ids, shape, "i")
    _check_layout("modality_ids", modality_ids, shape, "i")
    _check_layout("position_ids", position_ids, shape, "i")
    _check_layout("timestamps", timestamps, shape, "if")
    _check_layout(
        "attention_mask", attention_mask, shape, "bif",
        hint=" PosAttn builds its own attention bias from the 2-D padding mask (1 real token, 0 padding); do not pass "
        "a 4-D additive mask." if attention_mask is not None and attention_mask.dim() != 2 else "",
    )
    if modality_ids is None:
        if config.num_modalities > 1:
            raise ValueError(f"`modality_ids` is required with several modalities {config.modality_names}.")
        modality_ids = torch.zeros(shape, dtype=torch.long, device=device)
    mask = torch.ones(shape, dtype=torch.bool, device=device) if attention_mask is None else attention_mask != 0
    padding = ~mask
    modality_ids = modality_ids.long()

    # Per-modality facts as small lookup tables, gathered per token where the modalities differ: no loop over
    # modalities, no boolean indexing.
    specs = [config.modality_spec(name) for name in config.modality_names]
    num_modalities = config.num_modalities
    token_modality = modality_ids.clamp(0, num_modalities - 1)
    real = mask & (token_modality == modality_ids)  # real tokens of a known modality
    is_token = tokens_of_kind(real, specs, lambda spec: bool(spec.get("vocab_size")), token_modality)
    is_feature = tokens_of_kind(real, specs, lambda spec: token_feature_dim(spec) > 0, token_modality)
    problems = {
        # 1 and 0 only: a mask value equals its own `!= 0`
        "mask_values": attention_mask != mask if attention_mask is not None else None,
        "empty_rows": ~mask.any(dim=1),
        "modality_range": mask ^ real,
        "missing_ids": is_token if input_ids is None else None,
        "missing_values": is_feature if input_values is None else None,
        "token_ids": (
            is_token & ((input_ids < 0) | (input_ids >= vocab_sizes(specs, token_modality)))
            if input_ids is not None and is_token is not None else None
        ),
        "negative_positions": mask & (position_ids < 0) if position_ids is not None else None,
        "timestamps": mask & ~torch.isfinite(timestamps) if timestamps is not None else None,
    }
    if input_values is not None and is_feature is not None:
        peaks = feature_peaks(input_values, token_modality, specs)
        problems["feature_values"] = is_feature & ~(peaks <= MAX_FEATURE_MAGNITUDE)
    checked_positions = position_ids
    if config.absolute_position_encoding == "learned":
        if checked_positions is None:  # derived here (and reused below) so the table's bound is one more flag
            checked_positions = default_position_ids(token_modality, mask, num_modalities)
        problems["learned_table"] = mask & (checked_positions >= config.max_position_embeddings)
    # Under torch.compile / torch.export the value checks are skipped, as transformers models skip theirs with
    # `is_torchdynamo_compiling()`: their host sync would split the graph (and cannot be exported). Validate at the
    # boundary instead, eagerly: `model.validate_inputs(**batch)` (or the processor's output, which is valid by
    # construction). Shapes and dtypes above are still checked while tracing.
    # real tokens per sample and modality; their batch totals ride along in the one host sync below
    modality_counts = torch.zeros(shape[0], num_modalities, dtype=torch.long, device=device)
    modality_counts.scatter_add_(1, token_modality, mask.long())  # (B, M)
    if position_ids is not None:
        position_ids = position_ids.long().masked_fill(padding, 0)
    padded, num_positions, token_counts = None, None, None
    if not values_checks_skipped():
        checks = {name: flags for name, flags in problems.items() if flags is not None}
        # the one host sync of the checks; it also tells whether the batch has padding (the attention mask needs it)
        # and how many distinct positions there can be (an encoding of the position alone is computed once per
        # position: `TokenPositions.num_positions`). One reduction over all the flags (a sample's flag per token).
        flags = [flags if flags.dim() == 2 else flags[:, None].expand(shape) for flags in checks.values()]
        found = torch.stack([*flags, padding]).flatten(1).any(1).long()
        # derived positions (no `position_ids`) are below seq_len
        highest = position_ids.amax().view(1) if position_ids is not None else found.new_full((1,), shape[1] - 1)
        synced = torch.cat((found, highest, modality_counts.sum(0))).tolist()
        *failed, padded, highest = synced[:-num_modalities]
        padded, num_positions, token_counts = bool(padded), highest + 1, tuple(synced[-num_modalities:])
        if any(failed):
            first = next(name for name, flag in zip(checks, failed) if flag)
            raise_input_error(first, checks[first], config, modality_ids, input_ids, input_values, checked_positions)

    modality_ids = modality_ids.masked_fill(padding, 0)
    if position_ids is None:
        position_ids = (  # 0 on padding
            checked_positions if checked_positions is not None else default_position_ids(modality_ids, mask, num_modalities)
        )
    if timestamps is None:
        timestamps = default_timestamps(position_ids, modality_ids, mask, config.sampling_rates)
    times = timestamps.double()
    start = times.masked_fill(padding, math.inf).amin(dim=1, keepdim=True)
    timestamps = (times - start).masked_fill(padding, 0.0).float()
    lengths = modality_counts.gather(1, modality_ids)
    return TokenPositions(position_ids, timestamps, modality_ids, mask, lengths, padded, num_positions, token_counts)


def feature_peaks(input_values: torch.Tensor, token_modality: torch.Tensor, specs: list[dict]) -> torch.Tensor:
    """`(B, L)`: each token's largest feature magnitude over its modality's columns, `max(amax, -amin)`; NaN where one
    is NaN (both reductions propagate it, and `NaN <= bound` is False, so one comparison refuses NaN, Inf and huge values
    alike). Two reductions per distinct modality width over its own columns (a view), each token taking its width's:
    no `(B, L, F)` temporary, where `abs` then `amax` wrote one (and masked columns past a narrower modality's width in
    another)."""
    widths = sorted({token_feature_dim(spec) for spec in specs if spec.get("input_dim") is not None})
    if len(widths) > 1:
        width = modality_table(specs, token_feature_dim, token_modality.device).take(token_modality)
    peaks = None
    for columns in widths:
        own = input_values[..., :columns]
        # in float64: negating an integer type's minimum would overflow, and float16 rounds the bound itself to inf
        high, low = own.amax(dim=-1).double(), own.amin(dim=-1).double()
        peak = torch.maximum(high, low.neg_())
        peaks = peak if peaks is None else torch.where(width == columns, peak, peaks)
    return peaks


def modality_table(specs: list[dict], fact, device: torch.device) -> torch.Tensor:
    """`(M,)` table of one fact per modality, `fact(spec)` (an int or a bool); a token's is
    `table.take(token_modality)`."""
    return torch.tensor([fact(spec) for spec in specs], device=device)


def vocab_sizes(specs: list[dict], token_modality: torch.Tensor) -> torch.Tensor:
    """`(B, L)` vocabulary size of each token's modality (0 for a feature modality)."""
    return modality_table(specs, lambda spec: spec.get("vocab_size") or 0, token_modality.device).take(token_modality)


def tokens_of_kind(real: torch.Tensor, specs: list[dict], of_kind, token_modality: torch.Tensor) -> torch.Tensor | None:
    """The `real` tokens of the modalities where `of_kind(spec)` holds; None where it holds for none (nothing to check).
    Decided in Python from the config: no host sync, and no per-token lookup where it holds for every modality."""
    kinds = [of_kind(spec) for spec in specs]
    if all(kinds):
        return real
    if not any(kinds):
        return None
    return real & modality_table(specs, of_kind, real.device).take(token_modality)


def values_checks_skipped() -> bool:
    """True while torch.compile, torch.export or `torch.jit.trace` traces the model: checks on tensor values (a host
    sync each) are left to an eager call at the boundary (`PosAttnPreTrainedModel.validate_inputs`), and nothing the
    sync would learn (padding, positions, token counts) is baked into the trace as a constant."""
    return is_torchdynamo_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()


def features_as_float(input_values: torch.Tensor | None) -> torch.Tensor | None:
    """Integer features are valid numbers (validated by `resolve_token_positions`): make them floats for the projection."""
    return input_values if input_values is None or input_values.is_floating_point() else input_values.float()


def raise_input_error(problem, flags, config, modality_ids, input_ids, input_values, position_ids) -> None:
    """The detailed message for a failed check of `resolve_token_positions`: the slow path, run only on bad input."""
    sample, token = (int(index) for index in flags.nonzero()[0]) if flags.dim() == 2 else (0, 0)
    where = f"sample {sample}, token {token}"
    name = (
        config.modality_names[int(modality_ids[sample, token])]
        if flags.dim() == 2 and 0 <= int(modality_ids[sample, token]) < config.num_modalities
        else None
    )
    if problem == "mask_values":
        raise ValueError(
            f"`attention_mask` must hold 1 (real token) and 0 (padding) only ({where} holds a different value); "
            "PosAttn builds its own attention bias from it."
        )
    if problem == "empty_rows":
        rows = flags.nonzero().flatten().tolist()
        raise ValueError(
            f"Sample(s) {rows} have no tokens at all (`attention_mask` is all zeros): attention over an empty set is "
            "undefined. Drop these samples before calling the model."
        )
    if problem == "modality_range":
        raise ValueError(
            f"`modality_ids` holds {int(modality_ids[sample, token])} at {where}, outside 0..{config.num_modalities - 1} "
            f"(modalities {config.modality_names})."
        )
    if problem == "missing_ids":
        raise ValueError(f"Modality '{name}': `input_ids` must be an integer tensor of token ids, got None ({where}).")
    if problem == "missing_values":
        raise ValueError(f"Modality '{name}': `input_values` (batch, seq_len, >= {token_feature_dim(config.modality_spec(name))}) features are required, got None.")
    if problem == "token_ids":
        vocab_size = config.modality_spec(name)["vocab_size"]
        raise ValueError(
            f"Modality '{name}': `input_ids` must lie in [0, {vocab_size}), got {int(input_ids[sample, token])} at {where}."
        )
    if problem == "negative_positions":
        raise ValueError(f"`position_ids` must be >= 0 on real tokens, got {int(position_ids[sample, token])} at {where} (modality '{name}').")
    if problem == "timestamps":
        raise ValueError(f"`timestamps` holds NaN or Inf at {where} (modality '{name}').")
    if problem == "feature_values":
        frame = input_values[sample, token, : token_feature_dim(config.modality_spec(name))]
        kind = "NaN or Inf" if not bool(torch.isfinite(frame).all()) else f"magnitudes above {MAX_FEATURE_MAGNITUDE:g}"
        raise ValueError(
            f"Modality '{name}': `input_values` holds {kind} at {where}. Features must be finite and normalised "
            "(`PosAttnProcessor.fit` learns the mean and std)."
        )
    if problem == "learned_table":
        longest = int(position_ids[flags].max()) + 1
        raise ValueError(
            f"Modality '{name}': {longest} tokens exceed the `learned` position table "
            f"(max_position_embeddings={config.max_position_embeddings}). Truncate with the processor's `max_tokens`, "
            "raise `max_position_embeddings`, or use an encoding without a maximum length."
        )
    raise ValueError(f"Invalid input ({problem}) at {where}.")


# Above this estimate a dense (B, heads, L, L) attention tensor is refused with a clear error rather than attempted:
# the allocation would fail deep inside torch, or worse, push the machine into swap. Raise it if you have the memory.
DENSE_ATTENTION_MAX_BYTES = 16 * 2**30


def check_dense_bias_size(config: PosAttnConfig, batch_size: int, seq_len: int, dtype: torch.dtype,
                          max_bytes: int | None = None) -> None:
    """Refuse, before allocating, a dense attention bias (or eager attention weights) that would not fit.

    The estimate counts the `(B, heads, L, L)` bias in `dtype`, the float32 score it is computed from and the
    `(B, 1, L, L)` float32 time differences. A path that needs no L x L tensor (FlexAttention's `score_mod`, or a
    blocked linear-memory path) does not call this.
    """
    max_bytes = DENSE_ATTENTION_MAX_BYTES if max_bytes is None else max_bytes
    pairs = batch_size * seq_len * seq_len
    estimate = pairs * (config.num_attention_heads * (torch.finfo(dtype).bits // 8 + 4) + 4)
    if estimate > max_bytes:
        raise ValueError(
            f"A batch of {batch_size} sample(s) of up to {seq_len} tokens needs a dense ({batch_size}, "
            f"{config.num_attention_heads}, {seq_len}, {seq_len}) attention tensor under "
            f"relative_position_encoding='{config.relative_position_encoding}' with attn_implementation="
            f"'{config._attn_implementation}': about {estimate / 2**30:.1f} GiB, over the {max_bytes / 2**30:.1f} GiB "
            "limit (`modeling_posattn.validation_posattn.DENSE_ATTENTION_MAX_BYTES`). Ways out: attn_implementation='flex_attention' "
            "(the bias is computed inside the kernel, no L x L tensor), shorter samples (the processor's `max_tokens` "
            "or `max_seconds`), a smaller batch, or a kernel-friendly encoding ('rope', 'time_rope') with sdpa."
        )


IGNORE_INDEX = -100  # single-label targets equal to this are left out of the loss, as in transformers' heads


def validate_labels(labels: torch.Tensor, problem_type: str, num_labels: int) -> torch.Tensor:
    """`labels` checked against the head (shape, dtype, range; one host sync) and converted to the loss's dtype, or a
    `ValueError`/`TypeError` saying what the head expects."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"`labels` must be a torch.Tensor, got {type(labels).__name__}.")
    if labels.is_complex() or labels.dtype == torch.bool and problem_type != "multi_label_classification":
        raise TypeError(f"`labels` of dtype {labels.dtype} do not fit problem_type '{problem_type}'.")
    batch = labels.shape[0] if labels.dim() else None
    if problem_type == "single_label_classification":
        if labels.is_floating_point():
            raise TypeError(
                f"problem_type 'single_label_classification' needs integer class ids in `labels`, got {labels.dtype} "
                "(for several labels per sample set `problem_type='multi_label_classification'`; for a number, "
                "'regression')."
            )
        if labels.dim() != 1:
            raise ValueError(f"Single-label `labels` must be (batch,) class ids, got shape {tuple(labels.shape)}.")
        bad = ((labels < 0) | (labels >= num_labels)) & (labels != IGNORE_INDEX)
        if not values_checks_skipped() and bool(bad.any()):
            index = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"`labels` must be class ids in [0, {num_labels}) (num_labels={num_labels}), got {int(labels[index])} "
                f"for sample {index}."
            )
        return labels.long()
    expected = (batch, num_labels)
    if problem_type == "regression" and num_labels == 1 and labels.dim() == 1:
        expected = (batch,)
    if batch is None or tuple(labels.shape) != expected:
        raise ValueError(
            f"problem_type '{problem_type}' with num_labels={num_labels} needs `labels` of shape {expected}, "
            f"got {tuple(labels.shape)}."
        )
    labels = labels.float() if not labels.is_floating_point() else labels
    if values_checks_skipped():  # value checks need a host sync: done eagerly at the boundary (see above)
        return labels
    if problem_type == "regression":
        if not bool(torch.isfinite(labels).all()):
            raise ValueError("Regression `labels` hold NaN or Inf.")
    elif not bool(((labels >= 0) & (labels <= 1)).all()):  # multi-label targets are probabilities; also catches NaN
        raise ValueError("Multi-label `labels` must be 0/1 targets (or probabilities in [0, 1]).")
    return labels


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: str) -> torch.Tensor:
    """The head's loss for the config's `problem_type` (MSE, cross-entropy, or per-label binary cross-entropy)."""
    if problem_type == "regression":
        return nn.functional.mse_loss(logits.squeeze(-1) if labels.dim() == 1 else logits, labels.to(logits.dtype))
    if problem_type == "single_label_classification":
        return nn.functional.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)
    return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
