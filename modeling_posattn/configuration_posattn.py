"""PosAttn model configuration."""

import os
import shutil
from pathlib import Path
from typing import Any

from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers.configuration_utils import PreTrainedConfig
from transformers.dynamic_module_utils import get_relative_import_files
from transformers.modeling_rope_utils import RopeParameters

from .stems import stem_spec, token_feature_dim, validate_stem_spec

ABSOLUTE_POSITION_ENCODING_NAMES = ("none", "sinusoidal", "learned", "dynamic", "conditional", "multiscale")
RELATIVE_POSITION_ENCODING_NAMES = ("none", "rope", "time_rope", "alibi", "relative_bias")
POSITION_FUSION_NAMES = ("add", "concat", "gated")
POOLING_NAMES = ("mean", "cls")

# Tokens of a clockless modality in a sample with no clocked modality sit one TMRoPE step (40 ms) apart,
# so that a text-only sample under `time_rope` with the default `time_units_per_second` reduces to 1-D RoPE.
CLOCKLESS_STEP_SECONDS = 0.04

# The Auto classes a saved checkpoint answers to (remote code: `trust_remote_code=True`), by the flat file defining the
# class. `save_pretrained` writes all of them into `config.json` whichever class is saved (transformers only writes the
# saved class's own entry). The processor's entries (AutoFeatureExtractor, AutoProcessor) go to preprocessor_config.json.
MODEL_AUTO_MAP = {
    "AutoConfig": "configuration_posattn.PosAttnConfig",
    "AutoModel": "modeling_posattn.PosAttnModel",
    "AutoModelForSequenceClassification": "modeling_posattn.PosAttnForSequenceClassification",
}


def validate_modality_spec(modalities: dict[str, dict[str, Any]]) -> None:
    """Raise a `ValueError` naming the modality and the field when a modality declaration is unusable."""
    if not isinstance(modalities, dict) or not modalities:
        raise ValueError("`modalities` must be a non-empty dict mapping a modality name to its spec.")
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
        size = spec["input_dim"] if has_dim else spec["vocab_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            field = "input_dim" if has_dim else "vocab_size"
            raise ValueError(f"Modality '{name}': `{field}` must be a positive int, got {size!r}.")
        rate = spec.get("sampling_rate")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0):
            raise ValueError(f"Modality '{name}': `sampling_rate` must be a positive number of frames per second or None, got {rate!r}.")
        validate_stem_spec(name, spec)


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
        pooling (`str`): `mean` over real tokens, or `cls` (a learned token prepended at time 0).
        unit_scale_embeddings (`bool`): put content and absolute position on the same scale in the architecture: a
            per-modality LayerNorm after each stem (content at unit RMS whatever the stem's init or the input scale)
            and an RMSNorm on the absolute encoding (a sinusoid has RMS 0.71, a learned table 0.02 at init), so every
            encoding, every fusion and `none` start with position and content at RMS 1 (as TST's x sqrt(d) or
            ConvTran's normalised stem + unit-amplitude tAPE). False: the raw sum of the checkpoints before this option.
    """

    model_type = "posattn"

    modalities: dict | None = None
    modality_names: list | None = None
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 512
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_dropout: float = 0.0
    classifier_dropout: float | None = None
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    pooling: str = "mean"
    absolute_position_encoding: str = "sinusoidal"
    relative_position_encoding: str = "none"
    position_fusion: str = "add"
    max_position_embeddings: int = 512
    rope_parameters: RopeParameters | dict | None = None
    time_units_per_second: float = 25.0
    conditional_kernel_size: int = 3
    multiscale_num_bands: int | None = None
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    unit_scale_embeddings: bool = True

    def __post_init__(self, **kwargs):
        if self.modalities is None:
            self.modalities = {"features": {"input_dim": 16, "sampling_rate": 100.0}}
        validate_modality_spec(self.modalities)
        if self.modality_names is None:
            self.modality_names = list(self.modalities)
        if self.multiscale_num_bands is None:
            self.multiscale_num_bands = self.hidden_size // 2
        if self.rope_parameters is None:
            self.rope_parameters = {"rope_type": "default", "rope_theta": 10000.0}
        super().__post_init__(**kwargs)
        self.validate_posattn()

    def validate(self):
        """Run every `validate_*` check of this class (transformers calls this on save). The inherited `validate` runs
        the list that `@strict` collected on `PreTrainedConfig`, missing `validate_posattn` and the override below."""
        for name in sorted(dir(self)):
            if name.startswith("validate_"):
                try:
                    getattr(self, name)()
                except (ValueError, TypeError) as error:
                    raise StrictDataclassClassValidationError(validator=name, cause=error) from error

    def validate_rope(self):
        """transformers' RoPE checks (an even head dimension...) only when a rotary encoding uses `rope_parameters`."""
        if self.relative_position_encoding in ("rope", "time_rope"):
            super().validate_rope()

    def validate_posattn(self):
        if sorted(self.modality_names) != sorted(self.modalities):
            raise ValueError(
                f"`modality_names` {self.modality_names} must list exactly the modalities {sorted(self.modalities)}."
            )
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be a multiple of `num_attention_heads` ({self.num_attention_heads})."
            )
        choices = {
            "absolute_position_encoding": ABSOLUTE_POSITION_ENCODING_NAMES,
            "relative_position_encoding": RELATIVE_POSITION_ENCODING_NAMES,
            "position_fusion": POSITION_FUSION_NAMES,
            "pooling": POOLING_NAMES,
        }
        for field, allowed in choices.items():
            if getattr(self, field) not in allowed:
                raise ValueError(f"`{field}` must be one of {allowed}, got {getattr(self, field)!r}.")
        if self.relative_position_encoding in ("rope", "time_rope") and self.head_dim % 2:
            raise ValueError(f"Rotary encodings need an even head dimension, got {self.head_dim}.")
        if self.conditional_kernel_size < 1 or self.conditional_kernel_size % 2 == 0:
            raise ValueError(f"`conditional_kernel_size` must be a positive odd int, got {self.conditional_kernel_size}.")
        if not self.time_units_per_second > 0:
            raise ValueError(f"`time_units_per_second` must be positive, got {self.time_units_per_second}.")

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
