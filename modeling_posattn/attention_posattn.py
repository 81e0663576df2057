"""PosAttn's attention kernels, dispatched through transformers' attention interface: eager, sdpa with an exact
flash-kernel path for a bias that needs a gradient on CPU, FlexAttention with the bias as a `score_mod`, and attention
over blocks of query rows for a bias too large to build at once."""

import itertools
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .configuration_posattn import PosAttnConfig
from .bias_posattn import SLICE_CALL_MIN_ELEMENTS, QueryBlockedBias


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


class SdpaWithBiasGradient(torch.autograd.Function):
    r"""`softmax(q k^T s + b) v` on CPU for a float bias `b` that needs a gradient (`relative_bias`'s learned table).

    torch's CPU flash kernel takes a bias but gives it no gradient, so SDPA would fall back to its math path (the
    explicit L x L softmax and its backward, ~2.5x the flash kernel). Here the forward is the flash kernel with its
    log-sum-exp, and the backward is FlashAttention-2's (Dao, 2023) over blocks of `block_rows` query rows, which
    yields the bias gradient on the way: $P = \exp(q k^T s + b - \mathrm{lse})$, $dV = P^T dO$,
    $dS = P \odot (dO\,V^T - \mathrm{rowsum}(dO \odot O))$, $db = dS$, $dQ = dS\,K s$, $dK = dS^T Q s$.
    Exact against the math path (tests/test_speed.py). q, k and v may be in half precision (autocast), the bias in
    float32 or in their dtype: the flash kernel takes them so, and the backward runs in float32. Under
    `create_graph=True` the backward differentiates the math path instead, so its gradients can be differentiated again
    (a gradient penalty).
    """

    @staticmethod
    def forward(ctx, query, key, value, bias, scale: float, block_rows: int):
        ctx.block_rows = block_rows
        return flash_forward(ctx, query, key, value, bias, scale)

    @staticmethod
    def backward(ctx, grad_output):
        query, key, value, bias, output, logsumexp = ctx.saved_tensors
        scale = ctx.scale
        if torch.is_grad_enabled():
            return (*math_path_gradients(ctx, grad_output, query, key, value, bias), None, None)
        # in float32 whatever q, k and v hold (bfloat16 under autocast): dS is summed into the bias gradient
        inputs = (grad_output, query, key, value, bias, output)
        grads = biased_attention_backward(*(tensor.float() for tensor in inputs), logsumexp, scale, ctx.block_rows,
                                          recentre=output.dtype != torch.float32)
        return (*(grad.to(tensor.dtype) for grad, tensor in zip(grads, (query, key, value, bias))), None, None)


def flash_forward(ctx, query, key, value, mask, scale: float) -> torch.Tensor:
    """The CPU flash kernel's output, with what a backward needs kept in `ctx`: the inputs, the output, its log-sum-exp
    and the scale."""
    output, logsumexp = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, attn_mask=mask, scale=scale
    )
    ctx.save_for_backward(query, key, value, mask, output, logsumexp)
    ctx.scale = scale
    return output


def math_path_gradients(ctx, grad_output, query, key, value, mask) -> tuple:
    """`(dq, dk, dv, dmask)` (None where `ctx` needs none) under `create_graph=True` (a gradient penalty, say): by
    differentiating SDPA's math path, whose backward is made of differentiable operations, unlike the flash kernels'
    and the in-place blocks of `biased_attention_backward`."""
    inputs = (query, key, value, mask)
    needed = [need and tensor is not None for tensor, need in zip(inputs, ctx.needs_input_grad[:4])]
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        recomputed = nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=ctx.scale)
    wanted = [tensor for tensor, need in zip(inputs, needed) if need]
    grads = iter(torch.autograd.grad(recomputed, wanted, grad_output, create_graph=True))
    return tuple(next(grads) if need else None for need in needed)


class HalfPrecisionSdpa(torch.autograd.Function):
    r"""`softmax(q k^T s + m) v` on CPU for half-precision q, k, v (autocast) with a mask `m` that needs no gradient:
    SDPA's flash forward, in their dtype, with the mask as SDPA gets it (`float_mask`), so the same output as SDPA's and
    as a forward without gradients (which reentrant checkpointing runs); its backward in float32, on the inputs and
    output upcast. torch's CPU flash backward was 1.3-4.3x slower in bfloat16 than in float32 at 128-512 tokens and
    1.1x at 4096 (an Intel Xeon with AMX; docs/speed_notes.md), where its forward is faster in half precision; a
    training step's gain is in scripts/benchmark_autocast.py. The float32 backward is FlashAttention-2's, with `delta`
    from the same half-precision output as the bfloat16 kernel's, so no less exact. Under `create_graph=True` the
    backward differentiates SDPA's math path."""

    @staticmethod
    def forward(ctx, query, key, value, mask, scale: float):
        return flash_forward(ctx, query, key, value, mask, scale)

    @staticmethod
    def backward(ctx, grad_output):
        query, key, value, mask, output, logsumexp = ctx.saved_tensors
        inputs = (query, key, value)
        if torch.is_grad_enabled():
            return (*math_path_gradients(ctx, grad_output, *inputs, mask)[:3], None, None)
        grads = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            *(tensor.float() for tensor in (grad_output, *inputs, output)), logsumexp, 0.0, False,
            attn_mask=mask, scale=ctx.scale,
        )
        return (*(grad.to(tensor.dtype) for grad, tensor in zip(grads, inputs)), None, None)


# q, k and v dtypes the CPU flash kernel takes (with a float32 mask, or one of their dtype)
FLASH_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def own_cpu_paths_allowed(device: torch.device, dropout: float) -> bool:
    """Whether this package's own CPU attention paths may run (`SdpaWithBiasGradient`, `HalfPrecisionSdpa`, time-split
    attention): on CPU, without attention dropout, in eager execution (torch.compile and torch.export trace SDPA), and
    outside `torch.func` transforms (the custom Functions define no `setup_context` or vmap rule)."""
    tracing = torch.compiler.is_compiling() or torch.compiler.is_exporting()
    return not tracing and device.type == "cpu" and dropout == 0.0 and not torch._C._are_functorch_transforms_active()


def takes_half_precision_sdpa(query, key, value, attention_mask, dropout: float) -> bool:
    """Whether `HalfPrecisionSdpa` takes this call: half-precision q, k, v that need a gradient, a mask without one (or
    none), on the package's own CPU paths."""
    return (
        query.dtype in (torch.bfloat16, torch.float16)
        and torch.is_grad_enabled()
        and any(tensor.requires_grad for tensor in (query, key, value))
        and (attention_mask is None or not attention_mask.requires_grad)
        and own_cpu_paths_allowed(query.device, dropout)
    )


def float_mask(mask: torch.Tensor | None, query: torch.Tensor) -> torch.Tensor | None:
    """The flash kernel's mask, with SDPA's values: a boolean key mask as additive 0 / -inf (float32, where SDPA uses
    the queries' dtype: the same scores); under autocast a float mask in the autocast dtype (autocast casts SDPA's
    floating inputs, so a forward without gradients, which goes to SDPA, gives the same); else as it is."""
    if mask is None:
        return None
    if not mask.is_floating_point():
        return torch.zeros(mask.shape, device=mask.device).masked_fill_(~mask.bool(), float("-inf"))
    if torch.is_autocast_enabled(query.device.type):
        return mask.to(torch.get_autocast_dtype(query.device.type))
    return mask


def biased_attention_backward(
    grad_output, query, key, value, bias, output, logsumexp, scale: float, block_rows: int, recentre: bool = False
):
    """`(dq, dk, dv, db)` of `softmax(q k^T s + b) v` from the forward's `output` and `logsumexp` (see
    `SdpaWithBiasGradient`). `output` and `logsumexp` may be those of a larger softmax over more keys than `key`
    holds (time-split attention): the gradients are then those of this part of it. `recentre` (the keys are the whole
    softmax, and `output` was rounded to half precision): each row of dS, whose exact sum is 0, has `P` times its
    computed sum taken off, which is the error a `delta` from the rounded output makes."""
    delta = (grad_output * output).sum(-1, keepdim=True)
    batch, heads, length, keys = bias.shape
    # `q k^T s - lse` and `dO V^T - delta` each come out of one matmul, the row's offset riding along as one more
    # column against a row of ones: two passes fewer over every block of L-long score rows. These augmented copies
    # are also the contiguous operands the matmuls need (q, k, v and dO arrive as views of (B, L, heads, d) memory).
    query_offset = with_column(query * scale, -logsumexp)
    grad_offset = with_column(grad_output, -delta.squeeze(-1))
    key_ones_t = with_column(key, 1.0, transposed=True)
    value_ones_t = with_column(value, 1.0, transposed=True)
    scaled_query, grad_rows_all = query_offset[..., :-1], grad_offset[..., :-1]
    key_rows = key_ones_t[:, :, :-1].transpose(-1, -2)
    grad_query = query.new_empty(query.shape)
    grad_key, grad_value = key.new_zeros(key.shape), value.new_zeros(value.shape)
    grad_bias = bias.new_empty(bias.shape)
    # one block's probabilities, allocated (and its pages touched) once for all blocks
    workspace = query.new_empty(batch * heads * min(block_rows, length) * keys)
    for start in range(0, length, block_rows):
        rows = slice(start, start + block_rows)
        count = min(block_rows, length - start)
        probabilities = workspace[: batch * heads * count * keys].view(batch, heads, count, keys)
        torch.matmul(query_offset[:, :, rows], key_ones_t, out=probabilities)
        probabilities.add_(bias[:, :, rows]).exp_()
        grad_value.add_(torch.matmul(probabilities.transpose(-1, -2), grad_rows_all[:, :, rows]))
        grad_scores = grad_bias[:, :, rows]
        if count * keys < SLICE_CALL_MIN_ELEMENTS:
            grad_scores.copy_(torch.matmul(grad_offset[:, :, rows], value_ones_t).mul_(probabilities))
        else:
            for sample, head in itertools.product(range(batch), range(heads)):  # each one's rows are contiguous
                torch.mm(grad_offset[sample, head, rows], value_ones_t[sample, head], out=grad_scores[sample, head])
            grad_scores.mul_(probabilities)
        if recentre:
            grad_scores.addcmul_(probabilities, grad_scores.sum(-1, keepdim=True), value=-1.0)
        grad_query[:, :, rows] = torch.matmul(grad_scores, key_rows).mul_(scale)
        grad_key.add_(torch.matmul(grad_scores.transpose(-1, -2), scaled_query[:, :, rows]))
    return grad_query, grad_key, grad_value, grad_bias


def with_column(matrix: torch.Tensor, column: torch.Tensor | float, transposed: bool = False) -> torch.Tensor:
    """`[matrix, column]` along the last dimension as a new contiguous tensor, `(..., n, d + 1)`, or its transpose
    `(..., d + 1, n)` laid out contiguously; `column` is `(..., n)` or a number."""
    *leading, rows, width = matrix.shape
    if transposed:
        result = matrix.new_empty(*leading, width + 1, rows)
        result[..., :width, :] = matrix.transpose(-1, -2)
        result[..., width, :] = column
    else:
        result = matrix.new_empty(*leading, rows, width + 1)
        result[..., :width] = matrix
        result[..., width] = column
    return result


# about 8 MiB of float32 scores per block in `SdpaWithBiasGradient`'s backward: cache-sized, few Python iterations
BIAS_GRADIENT_BLOCK_ELEMENTS = 2**21


def sdpa_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
):
    """transformers' sdpa, except on CPU for a bias that needs a gradient (`SdpaWithBiasGradient`, with q, k and v in
    float32 or in half precision and the bias in float32 or their dtype: SDPA would take its math path, 2-3x slower than
    float32), and for training in half precision (`HalfPrecisionSdpa`: the flash backward in float32)."""
    trainable_bias = (
        attention_mask is not None
        and attention_mask.requires_grad
        and attention_mask.shape == (*query.shape[:3], key.shape[2])
        and query.dtype in FLASH_DTYPES
        and attention_mask.dtype in (torch.float32, query.dtype)
        and own_cpu_paths_allowed(query.device, dropout)
    )
    if trainable_bias:
        batch, heads, _, length = attention_mask.shape
        block_rows = max(1, BIAS_GRADIENT_BLOCK_ELEMENTS // (batch * heads * length))
        # the float32 bias as it is, also under autocast (a bfloat16 copy of the L x L bias and of its gradient cost
        # 40% of a step at 8 x 512); so a forward without gradients, which SDPA takes, rounds it where this does not
        output = SdpaWithBiasGradient.apply(query, key, value, attention_mask, scaling, block_rows)
    elif takes_half_precision_sdpa(query, key, value, attention_mask, dropout):
        output = HalfPrecisionSdpa.apply(query, key, value, float_mask(attention_mask, query), scaling)
    else:
        return ALL_ATTENTION_FUNCTIONS["sdpa"](
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    return output.transpose(1, 2).contiguous(), None


def attention_function(config: PosAttnConfig) -> Callable:
    """The configured attention kernel from transformers' attention interface (sdpa with the CPU bias-gradient path)."""
    if config._attn_implementation == "sdpa":
        return sdpa_attention_forward
    return ALL_ATTENTION_FUNCTIONS.get_interface(config._attn_implementation, eager_attention_forward)


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


def query_blocked_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: None,
    scaling: float,
    attention_bias: QueryBlockedBias,
    dropout: float = 0.0,
    **kwargs,
):
    """Exact biased attention over blocks of query rows: `softmax(q_r k^T s + b_r) v` for each block `r`, where `b_r` is
    only that block's `(B, heads, rows, L)` bias, so memory is linear in L. Each block runs the configured kernel
    (sdpa or eager). Softmax is per query row, so the blocks are independent and their concatenation is the dense result.
    With `attention_bias.checkpoint` and gradients on, a block keeps only its inputs for the backward pass (the bias
    SDPA would otherwise save is rebuilt there), or training memory would be quadratic again."""
    inner = attention_function(module.config)

    def attend(query_block: torch.Tensor, start: int) -> torch.Tensor:
        bias = attention_bias(slice(start, start + query_block.shape[2]))
        return inner(module, query_block, key, value, bias, scaling=scaling, dropout=dropout)[0]

    checkpointed = attention_bias.checkpoint and torch.is_grad_enabled()
    blocks = []
    for start in range(0, query.shape[2], attention_bias.block_size):
        query_block = query[:, :, start : start + attention_bias.block_size]
        if checkpointed:
            blocks.append(checkpoint(attend, query_block, start, use_reentrant=False))
        else:
            blocks.append(attend(query_block, start))
    return torch.cat(blocks, dim=1), None
