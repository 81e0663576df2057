"""Input validation of PosAttn at the boundary: the packed layout's shapes and dtypes (from metadata), its values (their
extremes over real tokens, one host sync per batch, skipped while torch.compile / torch.export trace; per-token flags
only for a failing batch), where every token sits (`resolve_token_positions`), the size of a dense attention tensor,
and the labels against the head."""

import math
from dataclasses import dataclass

import torch
from torch import nn

from transformers.utils import is_torchdynamo_compiling, logging

from .configuration_posattn import MAX_FEATURE_MAGNITUDE, PosAttnConfig
from .positional_encodings import TokenPositions, default_position_ids, default_timestamps
from .stems import token_feature_dim

logger = logging.get_logger(__name__)


def _check_layout(name: str, tensor: torch.Tensor | None, shape: tuple[int, ...], kinds: str, hint: str = "") -> None:
    """Shape and dtype of one packed input, from metadata only (no device sync). `kinds`: the allowed dtype kinds,
    a subset of "bif" (bool, integer, floating)."""
    if tensor is None:
        return
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(tensor).__name__}.")
    refuse_limited_dtype(name, tensor)
    if tuple(tensor.shape) != shape:
        raise ValueError(f"`{name}` has shape {tuple(tensor.shape)}, expected {shape} (batch, seq_len).{hint}")
    kind = "b" if tensor.dtype == torch.bool else "f" if tensor.is_floating_point() else "c" if tensor.is_complex() else "i"
    if kind not in kinds:
        wanted = {"b": "bool", "i": "integer", "f": "floating"}
        raise TypeError(f"`{name}` must be a tensor of dtype {' or '.join(wanted[k] for k in kinds)}, got {tensor.dtype}.")


# Unsigned integers wider than 8 bits: torch implements few operations for them (no `aminmax`, comparisons or sums on
# CPU), so they would fail deep inside torch.
LIMITED_DTYPES = (torch.uint16, torch.uint32, torch.uint64)


def refuse_limited_dtype(name: str, tensor: torch.Tensor) -> None:
    if tensor.dtype in LIMITED_DTYPES:
        raise TypeError(f"`{name}` of dtype {tensor.dtype} is not supported (torch has few operations for it): convert "
                        "it to int64 (or float32 for features).")


def warn_of_rounded_timestamps(timestamps: torch.Tensor | None) -> None:
    """Half-precision times were rounded before any check can see it (bfloat16 steps are 0.25 s at one minute,
    float16's 0.03 s: tokens 10 ms apart become simultaneous). A warning, not an error: casting every floating input to
    the model's dtype is the ecosystem's idiom (`BatchFeature.to(torch.bfloat16)`, transformers' own model tests), and
    the times may well be coarse enough."""
    if timestamps is not None and timestamps.is_floating_point() and torch.finfo(timestamps.dtype).bits < 32:
        logger.warning_once(
            f"`timestamps` of dtype {timestamps.dtype} round the times (tokens 10 ms apart at one minute become "
            "simultaneous): pass float32 or float64 timestamps. `batch.to(torch.bfloat16)` casts them too; the model "
            "casts `input_values` to its own dtype, so a batch needs no cast."
        )


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
    Shapes and dtypes are checked from metadata; the checks on values reduce each input to its extremes over real
    tokens, fetched in one host sync per batch (`BatchSummary`), and only a failing batch pays for the detailed message.

    Timestamps are taken relative to each sample's earliest real token, in float64, before the float32 cast: every
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
        refuse_limited_dtype("input_values", input_values)
    _check_layout("input_ids", input_ids, shape, "i")
    _check_layout("modality_ids", modality_ids, shape, "i")
    _check_layout("position_ids", position_ids, shape, "i")
    _check_layout("timestamps", timestamps, shape, "if")
    warn_of_rounded_timestamps(timestamps)
    _check_layout(
        "attention_mask", attention_mask, shape, "bif",
        hint=" PosAttn builds its own attention bias from the 2-D padding mask (1 real token, 0 padding); do not pass "
        "a 4-D additive mask." if attention_mask is not None and attention_mask.dim() != 2 else "",
    )
    if modality_ids is None:
        if config.num_modalities > 1:
            raise ValueError(f"`modality_ids` is required with several modalities {config.modality_names}.")
        modality_ids = torch.zeros(shape, dtype=torch.long, device=device)
    given = GivenInputs(attention_mask, input_ids, input_values, modality_ids.long(), position_ids, timestamps)
    mask = torch.ones(shape, dtype=torch.bool, device=device) if attention_mask is None else attention_mask != 0
    padding = ~mask
    num_modalities = config.num_modalities
    # Padding may hold anything and no value is checked yet: every per-token fact below is 0 on padding, and modality
    # ids are clamped where they index a table, so nothing fails inside torch before the checks have spoken.
    modality_ids = given.modality_ids.masked_fill(padding, 0)
    token_modality = modality_ids.clamp(0, num_modalities - 1)
    modality_counts = real_tokens_per_modality(mask, token_modality, num_modalities)  # (B, M)
    if position_ids is not None:
        position_ids = position_ids.long().masked_fill(padding, 0)
    else:
        position_ids = default_position_ids(token_modality, mask, num_modalities)
    if timestamps is None:
        timestamps = default_timestamps(position_ids, token_modality, mask, config.sampling_rates)
    timestamps = relative_timestamps(timestamps, padding)
    lengths = modality_counts.gather(1, token_modality)
    padded, num_positions, token_counts = None, None, None
    # Under torch.compile / torch.export the value checks are skipped, as transformers models skip theirs with
    # `is_torchdynamo_compiling()`: their host sync would split the graph (and cannot be exported). Validate at the
    # boundary instead, eagerly: `model.validate_inputs(**batch)` (or the processor's output, which is valid by
    # construction). Shapes and dtypes above are still checked while tracing.
    if not values_checks_skipped():
        summary = BatchSummary.of(config, given, mask, padding, modality_ids, token_modality, modality_counts,
                                  position_ids, timestamps)
        if summary.failed(config, given):
            raise_first_problem(config, given, mask, timestamps)
        padded, num_positions, token_counts = summary.padded, summary.highest("position_ids") + 1, summary.token_counts
    return TokenPositions(position_ids, timestamps, token_modality, mask, lengths, padded, num_positions, token_counts)


@dataclass
class GivenInputs:
    """The caller's inputs as given (modality ids as int64), for the checks and their messages."""

    attention_mask: torch.Tensor | None
    input_ids: torch.Tensor | None
    input_values: torch.Tensor | None
    modality_ids: torch.Tensor
    position_ids: torch.Tensor | None
    timestamps: torch.Tensor | None


def real_tokens_per_modality(mask: torch.Tensor, token_modality: torch.Tensor, num_modalities: int) -> torch.Tensor:
    """`(B, M)` real tokens of each modality in each sample."""
    if num_modalities == 1:
        return mask.sum(1, keepdim=True)
    counts = torch.zeros(mask.shape[0], num_modalities, dtype=torch.long, device=mask.device)
    return counts.scatter_add_(1, token_modality, mask.long())


def relative_timestamps(timestamps: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    """Float32 times relative to each sample's earliest real token, 0 on padding; the difference is taken in float64, so
    every relative encoding sees `t_j - t_i` exactly however late the sample's clock starts (`t0` of 1e6 s and more)."""
    times = timestamps.double()
    start = times.masked_fill(padding, math.inf).amin(dim=1, keepdim=True)
    return (times - start).masked_fill(padding, 0.0).float()


@dataclass
class BatchSummary:
    """What the value checks need of a batch, in one host sync: each sample's real tokens per modality, and the lowest
    and highest value over real tokens of every checked input. A NaN anywhere makes its extremes NaN, which no bound
    admits. Only a failing batch builds per-token flags (`raise_first_problem`), to name the sample and token."""

    counts: list[list[int]]  # (B, M)
    extremes: dict[str, tuple[float, float]]
    seq_len: int

    @classmethod
    def of(cls, config, given, mask, padding, modality_ids, token_modality, modality_counts, position_ids, timestamps):
        specs = modality_specs(config)
        integers = {"modality_ids": modality_ids, "position_ids": position_ids}
        if given.attention_mask is not None and given.attention_mask.is_floating_point():
            # a float mask may hold 0.5: compare it with its own 0/1 reading (integers and booleans: their range says it)
            integers["mask_mismatch"] = (given.attention_mask != mask).long()
        elif given.attention_mask is not None:
            integers["attention_mask"] = given.attention_mask
        is_token = tokens_of_kind(mask, specs, is_token_modality, token_modality)
        if given.input_ids is not None and is_token is not None:
            outside = (given.input_ids < 0) | (given.input_ids >= vocab_sizes(specs, token_modality))
            integers["token_ids"] = outside.logical_and_(is_token).long()
        floats = {"timestamps": timestamps}
        is_feature = tokens_of_kind(mask, specs, is_feature_modality, token_modality)
        if given.input_values is not None and is_feature is not None:
            elsewhere = padding if is_feature is mask else ~is_feature  # `mask` itself where every modality has features
            # integer features stay integers (a float32 next to the timestamps would round them near the bound)
            kind = floats if given.input_values.is_floating_point() else integers
            kind["input_values"] = feature_extremes(given.input_values, token_modality, specs).masked_fill(elsewhere, 0)
        ends = [end for values in (*integers.values(), *floats.values()) for end in torch.aminmax(values)]
        # float64 holds every count, and every id below 2**53, exactly
        integer_ends, float_ends = torch.stack(ends[: 2 * len(integers)]), torch.stack(ends[2 * len(integers):]).double()
        synced = torch.cat((modality_counts.flatten(), integer_ends, float_ends)).tolist()  # the checks' one host sync
        width, rows = modality_counts.shape[1], modality_counts.numel()
        counts = [[int(count) for count in synced[row: row + width]] for row in range(0, rows, width)]
        names, ends = [*integers, *floats], synced[rows:]
        return cls(counts, {name: (ends[2 * i], ends[2 * i + 1]) for i, name in enumerate(names)}, mask.shape[1])

    def highest(self, name: str) -> int:
        """The highest value of an integer input, or one above it where float64 rounds it (past 2**53)."""
        high = self.extremes[name][1]
        return int(high) if abs(high) < 2**53 else int(math.nextafter(high, math.inf))

    @property
    def token_counts(self) -> tuple[int, ...]:
        return tuple(sum(column) for column in zip(*self.counts))

    @property
    def padded(self) -> bool:
        return sum(map(sum, self.counts)) < len(self.counts) * self.seq_len

    def failed(self, config: PosAttnConfig, given: GivenInputs) -> bool:
        """Whether any check fails; which one, and where, is for `raise_first_problem` to find."""
        specs = modality_specs(config)
        extremes, present = self.extremes, [count > 0 for count in self.token_counts]
        mask_low, mask_high = extremes.get("attention_mask", (0, 0))
        low, high = extremes.get("input_values", (0.0, 0.0))
        return bool(
            mask_low < 0 or mask_high > 1 or extremes.get("mask_mismatch", (0, 0))[1] > 0
            or any(sum(row) == 0 for row in self.counts)
            or extremes["modality_ids"][0] < 0 or extremes["modality_ids"][1] >= config.num_modalities
            or given.input_ids is None and any(n and is_token_modality(spec) for n, spec in zip(present, specs))
            or given.input_values is None and any(n and is_feature_modality(spec) for n, spec in zip(present, specs))
            or extremes.get("token_ids", (0, 0))[1] > 0
            or extremes["position_ids"][0] < 0
            or not all(map(math.isfinite, extremes["timestamps"]))
            or not (-MAX_FEATURE_MAGNITUDE <= low and high <= MAX_FEATURE_MAGNITUDE)
            or config.absolute_position_encoding == "learned"
            and self.highest("position_ids") >= config.max_position_embeddings
        )


def raise_first_problem(config: PosAttnConfig, given: GivenInputs, mask: torch.Tensor, timestamps: torch.Tensor) -> None:
    """The slow path of a failing batch: every check's per-token flags, in order, and the first one's message
    (`raise_input_error`)."""
    specs = modality_specs(config)
    modality_ids, input_ids, input_values = given.modality_ids, given.input_ids, given.input_values
    token_modality = modality_ids.clamp(0, config.num_modalities - 1)
    real = mask & (token_modality == modality_ids)  # real tokens of a known modality
    is_token = tokens_of_kind(real, specs, is_token_modality, token_modality)
    is_feature = tokens_of_kind(real, specs, is_feature_modality, token_modality)
    position_ids = given.position_ids
    problems = {
        # 1 and 0 only: a mask value equals its own `!= 0`
        "mask_values": given.attention_mask != mask if given.attention_mask is not None else None,
        "empty_rows": ~mask.any(dim=1),
        "modality_range": mask ^ real,
        "missing_ids": is_token if input_ids is None else None,
        "missing_values": is_feature if input_values is None else None,
        "token_ids": (
            is_token & ((input_ids < 0) | (input_ids >= vocab_sizes(specs, token_modality)))
            if input_ids is not None and is_token is not None else None
        ),
        "negative_positions": mask & (position_ids < 0) if position_ids is not None else None,
        "timestamps": mask & ~torch.isfinite(given.timestamps) if given.timestamps is not None else None,
    }
    if input_values is not None and is_feature is not None:
        # in float64: negating an integer type's minimum would overflow, and float16 rounds the bound itself to inf
        low, high = feature_extremes(input_values, token_modality, specs).double()
        problems["feature_values"] = is_feature & ~(torch.maximum(high, low.neg_()) <= MAX_FEATURE_MAGNITUDE)
    if config.absolute_position_encoding == "learned":
        if position_ids is None:
            position_ids = default_position_ids(token_modality, mask, config.num_modalities)
        problems["learned_table"] = mask & (position_ids >= config.max_position_embeddings)
    for name, flags in problems.items():
        if flags is not None and bool(flags.any()):
            raise_input_error(name, flags, config, modality_ids, input_ids, input_values, position_ids)
    overflowed = (~torch.isfinite(timestamps)).any(1).nonzero().flatten().tolist()
    if not overflowed:  # the summary and the flags disagree: a bug here, still not a crash inside torch
        raise ValueError("Invalid input: the entry checks found a problem they cannot locate; please report it.")
    source = "`timestamps`" if given.timestamps is not None else "the times implied by `position_ids` and the sampling rates"
    raise ValueError(
        f"{source} of sample {overflowed[0]} span more than float32 can hold relative to its earliest token "
        f"({torch.finfo(torch.float32).max:.3g} s): give times in seconds."
    )


def feature_extremes(input_values: torch.Tensor, token_modality: torch.Tensor, specs: list[dict]) -> torch.Tensor:
    """`(2, B, L)`: each token's lowest and highest feature over its own modality's columns; NaN propagates. Two
    reductions per distinct modality width over its own columns (a view), each token taking its width's: no `(B, L, F)`
    temporary (`abs` then `amax` wrote one, and masked the columns past a narrower modality's width in another)."""
    widths = sorted({token_feature_dim(spec) for spec in specs if spec.get("input_dim") is not None})
    if len(widths) > 1:
        width = modality_table(specs, token_feature_dim, token_modality.device).take(token_modality)
    extremes = None
    for columns in widths:
        own = input_values[..., :columns]
        pair = torch.stack((own.amin(dim=-1), own.amax(dim=-1)))
        extremes = pair if extremes is None else torch.where(width == columns, pair, extremes)
    return extremes


def modality_specs(config: PosAttnConfig) -> list[dict]:
    """Each modality's spec, in `modality_names` order (the order of modality ids)."""
    return [config.modality_spec(name) for name in config.modality_names]


def is_token_modality(spec: dict) -> bool:
    return bool(spec.get("vocab_size"))


def is_feature_modality(spec: dict) -> bool:
    return token_feature_dim(spec) > 0


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
