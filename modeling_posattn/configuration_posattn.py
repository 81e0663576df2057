"""PosAttn model configuration."""

import functools
import math
import numbers
import os
import shutil
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import numpy as np

from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassError
from transformers.activations import ACT2FN
from transformers.configuration_utils import PreTrainedConfig
from transformers.dynamic_module_utils import get_relative_import_files
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, RopeParameters

from .stems import stem_spec, token_feature_dim, validate_stem_spec

# The choices, each written once. `positional_encodings.py` keys its registries by these names (a test asserts that the
# registries and these Literals hold the same names); the tuples are for argparse `choices` and messages.
AbsolutePositionEncodingName = Literal["none", "sinusoidal", "learned", "dynamic", "conditional", "multiscale"]
RelativePositionEncodingName = Literal["none", "rope", "time_rope", "alibi", "relative_bias"]
PositionFusionName = Literal["add", "concat", "gated"]
PoolingName = Literal["mean", "cls"]
MaskModeName = Literal["per_modality", "time_aligned"]
ActivationName = Literal[tuple(ACT2FN)]
ABSOLUTE_POSITION_ENCODING_NAMES = get_args(AbsolutePositionEncodingName)
RELATIVE_POSITION_ENCODING_NAMES = get_args(RelativePositionEncodingName)
POSITION_FUSION_NAMES = get_args(PositionFusionName)
POOLING_NAMES = get_args(PoolingName)
MASK_MODE_NAMES = get_args(MaskModeName)
ROTARY_ENCODINGS = ("rope", "time_rope")

# Tokens of a clockless modality in a sample with no clocked modality sit one TMRoPE step (40 ms) apart,
# so that a text-only sample under `time_rope` with the default `time_units_per_second` reduces to 1-D RoPE.
CLOCKLESS_STEP_SECONDS = 0.04

# Features are expected normalised. Beyond this magnitude a float32 forward pass is no longer trustworthy (the
# residual stream's squares in LayerNorm overflow near 1e19): the processor and the model refuse it with a clear error.
MAX_FEATURE_MAGNITUDE = 1e12

# The Auto classes a saved checkpoint answers to (remote code: `trust_remote_code=True`), by the flat file defining the
# class. `save_pretrained` writes all of them into `config.json` whichever class is saved (transformers only writes the
# saved class's own entry). The processor's entries (AutoFeatureExtractor, AutoProcessor) go to preprocessor_config.json.
MODEL_AUTO_MAP = {
    "AutoConfig": "configuration_posattn.PosAttnConfig",
    "AutoModel": "modeling_posattn.PosAttnModel",
    "AutoModelForSequenceClassification": "modeling_posattn.PosAttnForSequenceClassification",
    "AutoModelForPreTraining": "modeling_posattn.PosAttnForPreTraining",
}


def as_int(value: Any, where: str) -> int:
    """`value` as a Python int: ints and numpy integers pass (a `np.int64` width is a valid width); bool, floats and
    strings raise a `TypeError` naming `where`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where} must be an int, got {type(value).__name__} {value!r}.")
    return int(value)


def as_float(value: Any, where: str) -> float:
    """`value` as a finite Python float: ints, floats and numpy scalars pass; bool and strings raise a `TypeError`,
    NaN and infinities a `ValueError`, each naming `where`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where} must be a number, got {type(value).__name__} {value!r}.")
    if not math.isfinite(value):
        raise ValueError(f"{where} must be finite, got {value!r}.")
    return float(value)


def normalize_modality_spec(modalities: Any) -> dict[str, dict[str, Any]]:
    """The modality declaration with Python numbers (numpy scalars converted), or a `ValueError`/`TypeError` naming the
    modality and the field when it is unusable."""
    if not isinstance(modalities, dict) or not modalities:
        raise ValueError("`modalities` must be a non-empty dict mapping a modality name to its spec.")
    normalized = {}
    for name, spec in modalities.items():
        if not isinstance(name, str) or not name or name in ("timestamps", "labels", "label"):
            raise ValueError(f"Modality name {name!r} is not allowed: use a non-empty string other than timestamps/labels.")
        if not isinstance(spec, dict):
            raise ValueError(f"Modality '{name}': spec must be a dict, got {type(spec).__name__}.")
        unknown = set(spec) - {"input_dim", "vocab_size", "sampling_rate", "stem"}
        if unknown:
            raise ValueError(f"Modality '{name}': unknown spec field(s) {sorted(unknown)}.")
        has_dim, has_vocab = spec.get("input_dim") is not None, spec.get("vocab_size") is not None
        if has_dim == has_vocab:
            raise ValueError(f"Modality '{name}': give exactly one of `input_dim` (features) or `vocab_size` (token ids).")
        field = "input_dim" if has_dim else "vocab_size"
        size = as_int(spec[field], f"Modality '{name}': `{field}`")
        if size < 1:
            raise ValueError(f"Modality '{name}': `{field}` must be a positive int, got {size!r}.")
        rate = spec.get("sampling_rate")
        if rate is not None:
            rate = as_float(rate, f"Modality '{name}': `sampling_rate` (tokens per second, or None)")
            if not rate > 0:
                raise ValueError(f"Modality '{name}': `sampling_rate` must be a positive number of tokens per second or None, got {rate!r}.")
        validate_stem_spec(name, spec)
        normalized[name] = {
            field: size,
            **({"sampling_rate": rate} if "sampling_rate" in spec else {}),
            **({"stem": spec["stem"]} if spec.get("stem") is not None else {}),
        }
    return normalized


def plain_errors(cls):
    """`@strict` wraps every failed check in its own `StrictDataclass*Error`, which is neither a `ValueError` nor a
    `TypeError`. Re-raise it as the type of its cause (keeping strict's message, which names the field or the
    validator), so a bad config is caught by `except (ValueError, TypeError)` like every other bad input here. A string
    outside a `Literal`'s choices is a bad value, not a bad type: `ValueError`."""
    strict_init, strict_setattr, strict_validate = cls.__init__, cls.__setattr__, cls.validate
    field_types = {name: field.type for name, field in cls.__dataclass_fields__.items()}

    def reraise(error: StrictDataclassError, wrong_choice: bool = False):
        cause = error.__cause__
        kind = type(cause) if isinstance(cause, (ValueError, TypeError)) and not wrong_choice else ValueError
        raise kind(str(error)) from error

    @functools.wraps(strict_init)
    def __init__(self, *args, **kwargs):
        # numpy scalars are valid numbers for the int/float fields (strict's isinstance checks would refuse them)
        kwargs = {key: value.item() if isinstance(value, np.number) else value for key, value in kwargs.items()}
        try:
            strict_init(self, *args, **kwargs)
        except StrictDataclassError as error:
            reraise(error)

    def __setattr__(self, name, value):
        try:
            strict_setattr(self, name, value)
        except StrictDataclassError as error:
            reraise(error, wrong_choice=get_origin(field_types.get(name)) is Literal and isinstance(value, str))

    def validate(self):
        try:
            strict_validate(self)
        except StrictDataclassError as error:
            reraise(error)

    validate.__is_defined_by_strict_decorator__ = True  # lets a subclass apply `@strict` again
    cls.__init__, cls.__setattr__, cls.validate = __init__, __setattr__, validate
    return cls


@plain_errors
@strict
class PosAttnConfig(PreTrainedConfig):
    r"""
    Configuration of a [`PosAttnModel`]: a bidirectional transformer encoder over one token sequence built from several
    named modalities, each with its own clock.

    Args:
        modalities (`dict[str, dict]`):
            Each modality by name: `{"input_dim": int}` for frames of floats or `{"vocab_size": int}` for integer token
            ids, plus `"sampling_rate"` in frames per second (None for a modality without a clock, such as text). A
            feature modality may add `"stem"` (see `stems.py`), default `{"type": "linear"}`:
            - `type`: `linear` (one Linear per token), `conv` (temporal conv shared over channels, then a strided
              conv mixing channels, as ConvTran) or `patch` (the token's frames as an image cut into patches);
            - `stride` (all types, default 1): frames per token. The processor groups `stride` consecutive frames
              into one token (features concatenated, the last group zero-filled) timed at the centre of its frames,
              so the modality runs at `sampling_rate / stride` tokens per second;
            - `kernel_size` (`conv`, default 8): temporal kernel width in frames ('same' padding);
            - `filters` (`conv` default 8 temporal filters per channel; `patch` default 16 per patch);
            - `patch_size` (`patch`, required): `[frames, features]` of a patch, dividing `[stride, input_dim]`.
            Example: `{"input_dim": 24, "sampling_rate": 25, "stem": {"type": "conv", "kernel_size": 8, "stride": 2}}`.
        modality_names (`list[str]`, *optional*):
            The modalities' canonical order: a token's `modality_ids` value indexes this list. Defaults to the order of
            `modalities` at creation and is then stored explicitly, because `config.json` sorts dict keys.
        absolute_position_encoding (`str`): one of `none`, `sinusoidal`, `learned`, `dynamic`, `conditional`,
            `multiscale` (see `positional_encodings.py`).
        relative_position_encoding (`str`): one of `none`, `rope`, `time_rope`, `alibi`, `relative_bias`.
        position_fusion (`str`): how the absolute encoding meets the content: `add`, `concat` or `gated`.
        max_position_embeddings (`int`): the `learned` table size per modality, and the training length that RoPE
            scaling (`rope_parameters`) and the `multiscale` band range refer to. No other encoding has a maximum length.
        rope_parameters (`dict`, *optional*): transformers' RoPE parameters (`rope_type` default, linear, dynamic, yarn...).
        time_units_per_second (`float`): rotary ids / bias distance units per second for the time-based encodings
            (`time_rope`, `alibi`, `relative_bias`); 25 is TMRoPE's one id per 40 ms.
        conditional_kernel_size (`int`): kernel of the depthwise convolution of the `conditional` encoding (odd).
        multiscale_num_bands (`int`, *optional*): frequency bands of the `multiscale` encoding; defaults to hidden_size // 2.
        relative_attention_num_buckets / relative_attention_max_distance: T5-style buckets of the `relative_bias`
            encoding, the distance measured in time units (`time_units_per_second`).
        dense_bias_max_bytes (`int`): with `alibi` / `relative_bias` under eager or sdpa, the largest dense
            `(batch, heads, L, L)` bias built at once; past it, attention runs over blocks of query rows, each with only
            its own rows of the bias (exact, memory linear in L). Also the most per-pair bias data a time-split training
            step keeps for its layers.
        attention_bias_block_bytes (`int`): the size of one such block's bias, which sets the query rows per block.
        attention_bias_checkpoint (`bool`): recompute each block's bias and attention in the backward pass instead of
            keeping them, so that training memory is linear in L too (costs one more attention forward).
        time_split_min_length (`int`, *optional*): with `alibi` / `relative_bias` under sdpa on CPU (float32, or half
            precision: autocast or a half-precision model), from this many tokens (the batch's padded length) on,
            time-split attention: in time order, each block of queries attends to the keys far before and after it with
            the flash kernel and no pairwise bias, and to its near keys with a small one (exact, memory linear in L;
            faster than the dense bias from about 2048 tokens). `None`: never.
        pooling (`str`): `mean` over real tokens, or `cls` (a learned token prepended at time 0).
        unit_scale_embeddings (`bool`): put content and absolute position on the same scale in the architecture: a
            per-modality LayerNorm after each stem (content at unit RMS whatever the stem's init or the input scale)
            and an RMSNorm on the absolute encoding (a sinusoid has RMS 0.71, a learned table 0.02 at init), so every
            encoding, every fusion and `none` start with position and content at RMS 1 (as TST's x sqrt(d) or
            ConvTran's normalised stem + unit-amplitude tAPE). False: the raw sum of the checkpoints before this option.
        mask_ratio (`float`): [`PosAttnForPreTraining`] expected fraction of real tokens masked, in (0, 1). Default
            0.15 with `mask_span_length` 3: TST's masked-value pretraining of small multivariate sensor sets (Zerveas et
            al. 2021: ratio 0.15, mean span 3), the data size of this package's benchmarks. Larger data and
            redundant signals take more: wav2vec 2.0 masks ~49% of audio frames (span starts p = 0.065, spans of 10),
            PatchTST 40% of patches, VideoMAE 90% of video tubes.
        mask_span_length (`int`): [`PosAttnForPreTraining`] tokens per masked span (`per_modality`), time cells per
            masked window (`time_aligned`). A span longer than a modality's run is clipped to it.
        mask_mode (`str`): [`PosAttnForPreTraining`] `per_modality` (spans placed independently in each modality,
            as TST and wav2vec 2.0 do for one stream) or `time_aligned` (one time window hidden in every modality at
            once, so it cannot be copied from another stream). See `masking_posattn.py`.
        mask_span_seconds (`float`, *optional*): [`PosAttnForPreTraining`] the `time_aligned` window in seconds;
            default `mask_span_length` ticks of the slowest clocked modality (40 ms ticks without a clock).
    """

    model_type = "posattn"

    modalities: dict | None = None
    modality_names: list[str] | None = None
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 512
    hidden_act: ActivationName = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_dropout: float | int = 0.0
    classifier_dropout: float | int | None = None
    layer_norm_eps: float = 1e-5
    initializer_range: float | int = 0.02
    pooling: PoolingName = "mean"
    absolute_position_encoding: AbsolutePositionEncodingName = "sinusoidal"
    relative_position_encoding: RelativePositionEncodingName = "none"
    position_fusion: PositionFusionName = "add"
    max_position_embeddings: int = 512
    rope_parameters: RopeParameters | dict | None = None
    time_units_per_second: float | int = 25.0
    conditional_kernel_size: int = 3
    multiscale_num_bands: int | None = None
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    unit_scale_embeddings: bool = True
    dense_bias_max_bytes: int = 256 * 2**20
    attention_bias_block_bytes: int = 16 * 2**20
    attention_bias_checkpoint: bool = True
    time_split_min_length: int | None = 2048
    mask_ratio: float = 0.15
    mask_span_length: int = 3
    mask_mode: MaskModeName = "per_modality"
    mask_span_seconds: float | None = None

    def __post_init__(self, **kwargs):
        if self.modalities is None:
            self.modalities = {"features": {"input_dim": 16, "sampling_rate": 100.0}}
        # numpy scalars (a width read from an array's shape, a rate from a float32 column) become Python numbers here,
        # before anything derives from them or `config.json` has to serialise them
        self.modalities = normalize_modality_spec(self.modalities)
        if self.modality_names is None:
            self.modality_names = list(self.modalities)
        if self.multiscale_num_bands is None:
            self.multiscale_num_bands = self.hidden_size // 2
        if self.rope_parameters is None:
            self.rope_parameters = {"rope_type": "default", "rope_theta": 10000.0}
        super().__post_init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs):
        """A saved config must say its modalities' order: `config.json` stores dict keys sorted, so without
        `modality_names` the order that indexes the model's per-modality weights would silently become alphabetical.

        A saved config without `unit_scale_embeddings` predates that option: it loads with the option off, so an older
        checkpoint keeps computing what it was trained to compute (new configs default to on)."""
        if "unit_scale_embeddings" not in config_dict and "unit_scale_embeddings" not in kwargs:
            config_dict = {**config_dict, "unit_scale_embeddings": False}
        modalities = config_dict.get("modalities") or {}
        if isinstance(modalities, dict) and len(modalities) > 1 and "modality_names" not in {**config_dict, **kwargs}:
            raise ValueError(
                f"The config lists modalities {sorted(modalities)} but no `modality_names`: their order (which indexes "
                "the model's per-modality weights) cannot be recovered, because config.json stores keys sorted. Add "
                '`"modality_names": [...]` to config.json in the order the model was built with.'
            )
        return super().from_dict(config_dict, **kwargs)

    # `@strict` runs every `validate_*` method after `__init__` and on save; each checks one group of fields.

    def validate_modalities(self):
        normalize_modality_spec(self.modalities)
        if sorted(self.modality_names) != sorted(self.modalities) or len(set(self.modality_names)) != len(self.modality_names):
            raise ValueError(
                f"`modality_names` {self.modality_names} must list exactly the modalities {sorted(self.modalities)}."
            )

    def validate_architecture(self):
        """Sizes. Replaces the inherited check (of `num_heads`/`embed_dim`, which this config does not have); its name
        sorts first, and `@strict` runs validators in name order, so the others may rely on positive sizes."""
        for field in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                      "max_position_embeddings", "multiscale_num_bands"):
            if getattr(self, field) < 1:
                raise ValueError(f"`{field}` must be a positive int, got {getattr(self, field)}.")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be a multiple of `num_attention_heads` ({self.num_attention_heads})."
            )
        if self.conditional_kernel_size < 1 or self.conditional_kernel_size % 2 == 0:
            raise ValueError(f"`conditional_kernel_size` must be a positive odd int, got {self.conditional_kernel_size}.")

    def validate_numbers(self):
        probabilities = ("hidden_dropout_prob", "attention_dropout", "classifier_dropout")
        for field in probabilities:
            value = getattr(self, field)
            if value is not None and not 0 <= value <= 1:  # also rejects NaN
                raise ValueError(f"`{field}` must be a probability in [0, 1], got {value}.")
        for field, low in (("layer_norm_eps", "positive"), ("time_units_per_second", "positive"), ("initializer_range", "non-negative")):
            value = getattr(self, field)
            if not (math.isfinite(value) and (value > 0 if low == "positive" else value >= 0)):
                raise ValueError(f"`{field}` must be a finite {low} number, got {value}.")

        split = self.time_split_min_length
        if split is not None and (isinstance(split, bool) or not isinstance(split, int) or split < 1):
            raise ValueError(f"`time_split_min_length` must be a positive int or None, got {split!r}.")

    def validate_relative_bias(self):
        """T5 bucketing needs room for exact buckets on both sides (an even count of at least 4) and a log range
        beyond them (`max_distance` above the exact part, `num_buckets // 4`)."""
        buckets, distance = self.relative_attention_num_buckets, self.relative_attention_max_distance
        if buckets < 4 or buckets % 2:
            raise ValueError(f"`relative_attention_num_buckets` must be an even int >= 4, got {buckets}.")
        if distance <= buckets // 4:
            raise ValueError(
                f"`relative_attention_max_distance` ({distance}) must exceed `relative_attention_num_buckets // 4` "
                f"({buckets // 4}), the last exactly-bucketed distance."
            )

    def validate_rope(self):
        """transformers' RoPE checks, then a trial computation of the frequencies, only when a rotary encoding uses
        `rope_parameters`: an unknown `rope_type`, a missing `factor` or a head too small for dynamic NTK fail here,
        not at the first forward pass."""
        if self.relative_position_encoding not in ROTARY_ENCODINGS:
            return
        if self.head_dim % 2:
            raise ValueError(f"Rotary encodings need an even head dimension, got {self.head_dim}.")
        parameters = self.rope_parameters
        if not isinstance(parameters, dict):
            raise TypeError(f"`rope_parameters` must be a dict, got {type(parameters).__name__}.")
        rope_type = parameters.get("rope_type", "default")
        if rope_type != "default" and rope_type not in ROPE_INIT_FUNCTIONS:
            raise ValueError(f"`rope_parameters['rope_type']` must be one of {['default', *ROPE_INIT_FUNCTIONS]}, got {rope_type!r}.")
        theta = parameters.get("rope_theta")
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not (math.isfinite(theta) and theta > 0):
            raise ValueError(f"`rope_parameters['rope_theta']` must be a finite positive number, got {theta!r}.")
        try:
            super().validate_rope()
        except KeyError as error:  # transformers reports a missing key (yarn's `factor`...) as a KeyError
            raise ValueError(f"`rope_parameters` {parameters}: {error.args[0]}") from error
        if rope_type != "default":
            try:
                inv_freq, scaling = ROPE_INIT_FUNCTIONS[rope_type](self)
            except (KeyError, TypeError, ValueError, ZeroDivisionError, ArithmeticError) as error:
                raise ValueError(f"`rope_parameters` {parameters} cannot be used with head_dim {self.head_dim}: {error!r}.") from error
            if not (bool(inv_freq.isfinite().all()) and math.isfinite(float(scaling))):
                raise ValueError(f"`rope_parameters` {parameters} give non-finite frequencies for head_dim {self.head_dim}.")

    def validate_masking(self):
        """The pretraining mask settings (`PosAttnForPreTraining`); they exist, with defaults, on every config."""
        ratio = self.mask_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio < 1.0:
            raise ValueError(f"`mask_ratio` must be a number in (0, 1) (the expected masked fraction), got {ratio!r}.")
        length = self.mask_span_length
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"`mask_span_length` must be a positive int, got {length!r}.")
        seconds = self.mask_span_seconds
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0):
            raise ValueError(f"`mask_span_seconds` must be a positive number of seconds or None, got {seconds!r}.")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def num_modalities(self) -> int:
        return len(self.modality_names)

    def modality_spec(self, name: str) -> dict[str, Any]:
        return self.modalities[name]

    @property
    def sampling_rates(self) -> list[float | None]:
        """Tokens per second of each modality (frames per second / stem stride), in `modality_names` order (None: no clock)."""
        rates = []
        for name in self.modality_names:
            spec, rate = self.modalities[name], self.modalities[name].get("sampling_rate")
            rates.append(rate / stem_spec(spec)["stride"] if rate and spec.get("input_dim") is not None else rate)
        return rates

    @property
    def max_feature_dim(self) -> int:
        """Width of the packed `input_values` tensor: the largest `stride * input_dim` of any feature modality (0 if none)."""
        return max(token_feature_dim(spec) for spec in self.modalities.values())

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs):
        """Save `config.json`. Once the class is registered for the Auto classes (importing `modeling_posattn` does it),
        the folder is a self-contained remote-code checkpoint whichever class was saved: `auto_map` holds every entry of
        `MODEL_AUTO_MAP` and the files they name (with their relative imports) are copied next to `config.json`."""
        if self._auto_class is None:
            return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        if push_to_hub:
            # Write the complete folder, then upload a fresh save (transformers only uploads files written after its
            # own timestamp snapshot, which would miss the code copied here).
            self.save_pretrained(save_directory)
            return self.push_to_hub(kwargs.pop("repo_id", str(save_directory).split(os.path.sep)[-1]), **kwargs)
        here = Path(__file__).parent
        auto_map = dict(getattr(self, "auto_map", None) or {})
        os.makedirs(save_directory, exist_ok=True)
        for auto_class, reference in MODEL_AUTO_MAP.items():
            source = here / f"{reference.split('.')[0]}.py"
            if not source.is_file():  # e.g. a config loaded alone as remote code: its model file was never fetched
                continue
            auto_map.setdefault(auto_class, reference)
            for file in (source, *map(Path, get_relative_import_files(str(source)))):
                if Path(save_directory, file.name).resolve() != file.resolve():
                    shutil.copyfile(file, Path(save_directory, file.name))
        self.auto_map = auto_map
        return super().save_pretrained(save_directory, **kwargs)


__all__ = ["PosAttnConfig"]
