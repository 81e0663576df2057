r"""Per-modality linear maps over a packed batch at the cost of one: tokens sorted by modality, one grouped GEMM.

A packed batch interleaves modalities within each sample, so a map with weights per modality (a Linear stem, the gated
fusion's gate) has no contiguous slice per modality. Without boolean indexing (data-dependent shapes, a host sync) the
traceable way is to apply all M maps to every token and keep each token's own (`select_per_modality`): M times the
work. In eager execution on CPU the tokens are instead put in modality order once per forward (a stable sort of
`modality_ids`, no host sync) and each modality's block gets its own weight in one `torch.nn.functional.grouped_mm`
call, whose group ends are a tensor: $y_{\pi(n)} = W_{m(\pi(n))} x_{\pi(n)} + b_{m(\pi(n))}$ with $\pi$ the sorting
permutation. The cost is one map's, whatever the number of modalities.
"""

from dataclasses import dataclass

import torch
from torch import nn

# the dtypes grouped_mm takes on CPU
GROUPED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# grouped_mm needs rows of a multiple of 16 bytes: widths a multiple of 8 give them in any of those dtypes (autocast
# may halve a float32 width's bytes)
GROUPED_COLUMNS = 8


def grouped_path_allowed(tensor: torch.Tensor) -> bool:
    """Whether per-modality maps may run as one grouped GEMM: eager execution on CPU (torch.compile, torch.export and
    `torch.jit.trace` trace the batched formula instead), outside `torch.func` transforms and forward-mode AD (grouped_mm
    has neither a batching rule nor a forward derivative), in a dtype grouped_mm takes."""
    tracing = torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()
    return (
        not tracing
        and tensor.device.type == "cpu"
        and tensor.dtype in GROUPED_DTYPES
        and not torch._C._are_functorch_transforms_active()
        and torch.autograd.forward_ad._current_level < 0
    )


def plain_module(module: nn.Module, kind: type[nn.Module]) -> bool:
    """Whether `module` is exactly a `kind` that nothing wraps, so that its weights (or its `rows`) may stand in for its
    forward: no hook of its own or global (forward, pre-forward, backward), no `forward` replaced on the instance
    (accelerate's `add_hook_to_module`, adapters that patch it). Otherwise the module is called, and sees every token.
    The same test tells the encoder layer that nothing but itself sees a sublayer's output (`add_residual`)."""
    hooks = (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks, module._backward_pre_hooks)
    global_hooks = (
        nn.modules.module._global_forward_hooks,
        nn.modules.module._global_forward_pre_hooks,
        nn.modules.module._global_backward_hooks,
        nn.modules.module._global_backward_pre_hooks,
    )
    return type(module) is kind and "forward" not in vars(module) and not any(hooks) and not any(global_hooks)


def plain_module_of(module: nn.Module, kinds) -> bool:
    """Whether `module` is exactly one of `kinds` (a registry's classes: no subclass, whose own `forward` the
    registered class's shortcuts would bypass) and plain (`plain_module`)."""
    return type(module) in kinds and plain_module(module, type(module))


@dataclass(frozen=True)
class ModalityOrder:
    """The tokens of a `(batch, seq_len)` packed batch in modality order (stable: sequence order within a modality).

    Attributes:
        order: `(N,)` flat index of the token at each sorted row, N = batch x seq_len.
        restore: `(N,)` sorted row of each token: the inverse permutation.
        ends: `(M,)` int32 cumulative token counts: modality m holds sorted rows `ends[m-1]:ends[m]`.
        sorted_ids: `(N,)` modality of each sorted row.
    """

    order: torch.Tensor
    restore: torch.Tensor
    ends: torch.Tensor
    sorted_ids: torch.Tensor

    @classmethod
    def of(cls, modality_ids: torch.Tensor, num_modalities: int) -> "ModalityOrder":
        """From in-range `modality_ids` (padding holds any valid id). One sort, one scatter: no host sync."""
        flat = modality_ids.flatten()
        sorted_ids, order = flat.sort(stable=True)
        restore = torch.empty_like(order).scatter_(0, order, torch.arange(flat.numel(), device=flat.device))
        counts = flat.new_zeros(num_modalities).scatter_add_(0, flat, torch.ones_like(flat))
        return cls(order, restore, counts.cumsum(0).to(torch.int32), sorted_ids)

    def sort(self, tensor: torch.Tensor) -> torch.Tensor:
        """`(B, L, ...)` -> `(N, ...)` in modality order."""
        return tensor.flatten(0, 1).index_select(0, self.order)

    def unsort(self, tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """`(N, ...)` in modality order -> `(B, L, ...)` with `(B, L) = shape`."""
        return tensor.index_select(0, self.restore).unflatten(0, shape)

    def linear(self, inputs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """`(B, L, in)` tokens, each through its own modality's `weight[m]` `(out, in)`: put in modality order, one
        grouped GEMM (`grouped_linear`), put back: `(B, L, out)`."""
        return self.unsort(grouped_linear(self.sort(inputs), weight, self), inputs.shape[:2])


def aligned(*widths: int) -> bool:
    """Whether grouped_mm can take operands of these widths in any of `GROUPED_DTYPES`."""
    return all(width % GROUPED_COLUMNS == 0 for width in widths)


def affine_width(columns: int) -> int:
    """Input columns of a grouped affine map: `columns` features, the bias's column of ones, zeros to 16-byte rows."""
    return -(-(columns + 1) // GROUPED_COLUMNS) * GROUPED_COLUMNS


def bias_inputs(like: torch.Tensor, columns: int) -> torch.Tensor:
    """`(..., affine_width(columns) - columns)` to append to `columns` features: a one (the bias's input), then zeros;
    an expanded view, so `torch.cat` writes it without a copy of its own."""
    row = like.new_zeros(affine_width(columns) - columns)
    row[0] = 1.0
    return row.expand(*like.shape[:-1], row.shape[0])


def stacked_affine(
    weights: list[torch.Tensor | None],
    biases: list[torch.Tensor | None],
    columns: int,
    out_features: int,
    like: torch.Tensor,
) -> torch.Tensor:
    """`(M, out, affine_width(columns))`: per modality `[W_m, 0, b_m, 0]`, its weight zero-padded to `columns`, its bias
    in the column of ones (`bias_inputs`); all zeros for a modality without a map (None). With the bias inside the GEMM
    its gradient comes from the GEMM too, and a row of zeros maps to exactly zero."""
    width = affine_width(columns)
    after_bias = like.new_zeros(out_features, width - columns - 1)
    blocks = [
        like.new_zeros(out_features, width)
        if weight is None
        else torch.cat((nn.functional.pad(weight, (0, columns - weight.shape[1])), bias[:, None], after_bias), dim=1)
        for weight, bias in zip(weights, biases)
    ]
    return torch.stack(blocks)


def grouped_linear(inputs: torch.Tensor, weight: torch.Tensor, order: ModalityOrder) -> torch.Tensor:
    """`(N, in)` rows in modality order, each through its own modality's `weight[m]` `(out, in)`: `(N, out)`.

    Under autocast, operands in the autocast dtype, as `nn.functional.linear` gets them (autocast does not cast
    grouped_mm). grouped_mm's CPU backward needs a contiguous output gradient: callers hand the output to
    `ModalityOrder.unsort`, whose backward writes one."""
    if torch.is_autocast_enabled(inputs.device.type):
        dtype = torch.get_autocast_dtype(inputs.device.type)
        inputs, weight = inputs.to(dtype), weight.to(dtype)
    return nn.functional.grouped_mm(inputs.contiguous(), weight.transpose(-1, -2), offs=order.ends)
