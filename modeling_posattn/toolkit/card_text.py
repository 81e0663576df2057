"""The words of a model card: one sentence per encoding, and the references each encoding cites."""

SYNTHETIC_DATASET_NAME = "synthetic"

# One sentence per encoding name, by part of the model. A test checks that every registry name
# (positional_encodings.py) has a sentence.
ENCODING_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "absolute": {
        "none": "No absolute encoding: tokens carry only their content and modality embeddings, so order reaches the "
        "model through the relative encoding alone, if any.",
        "sinusoidal": "Fixed sine and cosine features of each token's index within its own modality (Vaswani et al., "
        "2017), computed on the fly, so there is no maximum length.",
        "learned": "A learned embedding table per modality, indexed by the token's position within its modality, "
        "holding at most `max_position_embeddings` positions per modality.",
        "dynamic": "Sinusoids whose frequencies are rescaled by the length of the token's modality in its own sample "
        "(tAPE, Foumani et al., 2023), so that the encoding adapts to each sequence's length.",
        "conditional": "Positions generated from content by a learned depthwise convolution over each modality's "
        "neighbouring tokens (CPVT, Chu et al., 2023): translation-equivariant and without a maximum length.",
        "multiscale": "Fourier features of each token's time in seconds over log-spaced frequency bands, with a learned "
        "gain per modality and band (as in Perceiver, Jaegle et al., 2021), so all modalities share one time axis.",
    },
    "relative": {
        "none": "No relative encoding: attention scores depend on content and the absolute encoding only.",
        "rope": "Rotary position embedding of the index within each modality (RoFormer, Su et al., 2021): queries and "
        "keys are rotated so that attention depends on the difference of indices.",
        "time_rope": "Rotary position embedding of absolute time, as TMRoPE in Qwen2.5-Omni (Xu et al., 2025): tokens of "
        "any modality at the same moment share a phase, so attention depends on the difference of times.",
        "alibi": "A fixed per-head linear penalty on the time distance between two tokens (ALiBi, Press et al., 2022), "
        "favouring nearby moments across all modalities.",
        "relative_bias": "A learned per-head bias over log-bucketed time distance (as in T5, Raffel et al., 2020), added "
        "to the attention scores.",
    },
    "fusion": {
        "add": "The absolute encoding is added to the content embedding (Vaswani et al., 2017).",
        "concat": "Content and absolute encoding are concatenated and mixed by a learned linear projection.",
        "gated": "A learned per-modality sigmoid gate, computed from content and position, decides per channel how much "
        "of the absolute encoding is added to the content.",
    },
}

REFERENCES: dict[str, str] = {
    "vaswani2017": "Vaswani et al., 2017. *Attention Is All You Need.* NeurIPS 2017. "
    "[arXiv:1706.03762](https://arxiv.org/abs/1706.03762) (the transformer; sinusoidal encoding added to content).",
    "su2021": "Su et al., 2021. *RoFormer: Enhanced Transformer with Rotary Position Embedding.* "
    "[arXiv:2104.09864](https://arxiv.org/abs/2104.09864) (RoPE).",
    "press2022": "Press, Smith and Lewis, 2022. *Train Short, Test Long: Attention with Linear Biases Enables Input "
    "Length Extrapolation.* ICLR 2022. [arXiv:2108.12409](https://arxiv.org/abs/2108.12409) (ALiBi).",
    "raffel2020": "Raffel et al., 2020. *Exploring the Limits of Transfer Learning with a Unified Text-to-Text "
    "Transformer.* JMLR 21. [arXiv:1910.10683](https://arxiv.org/abs/1910.10683) (T5 relative attention bias).",
    "foumani2023": "Foumani et al., 2023. *Improving Position Encoding of Transformers for Multivariate Time Series "
    "Classification* (ConvTran). Data Mining and Knowledge Discovery. "
    "[arXiv:2305.16642](https://arxiv.org/abs/2305.16642) (tAPE).",
    "chu2023": "Chu et al., 2023. *Conditional Positional Encodings for Vision Transformers* (CPVT). ICLR 2023. "
    "[arXiv:2102.10882](https://arxiv.org/abs/2102.10882).",
    "jaegle2021": "Jaegle et al., 2021. *Perceiver: General Perception with Iterative Attention.* ICML 2021. "
    "[arXiv:2103.03206](https://arxiv.org/abs/2103.03206) (Fourier position features).",
    "xu2025": "Xu et al., 2025. *Qwen2.5-Omni Technical Report.* [arXiv:2503.20215](https://arxiv.org/abs/2503.20215) "
    "(TMRoPE: time-aligned multimodal rotary positions, one id per 40 ms).",
}

# Always cited: the architecture itself.
GENERAL_REFERENCES = ("vaswani2017",)
# Cited when the config uses the encoding.
ENCODING_REFERENCES: dict[tuple[str, str], tuple[str, ...]] = {
    ("absolute", "sinusoidal"): ("vaswani2017",),
    ("absolute", "learned"): ("vaswani2017",),
    ("absolute", "dynamic"): ("foumani2023",),
    ("absolute", "conditional"): ("chu2023",),
    ("absolute", "multiscale"): ("jaegle2021", "xu2025"),
    ("relative", "rope"): ("su2021",),
    ("relative", "time_rope"): ("su2021", "xu2025"),
    ("relative", "alibi"): ("press2022",),
    ("relative", "relative_bias"): ("raffel2020",),
    ("fusion", "add"): ("vaswani2017",),
}

TIME_BASED_ENCODINGS = {"multiscale", "time_rope", "alibi", "relative_bias"}


__all__ = ["ENCODING_DESCRIPTIONS", "ENCODING_REFERENCES", "GENERAL_REFERENCES", "REFERENCES", "SYNTHETIC_DATASET_NAME",
           "TIME_BASED_ENCODINGS"]
