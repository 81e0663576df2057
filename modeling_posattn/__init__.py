"""posattn: a Hugging Face Transformers encoder for multimodal sequences, with positional encoding done right.

Importing the package registers the config, the models and the processor with the Auto classes.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForSequenceClassification,
)

from .configuration_posattn import PosAttnConfig
from .modeling_posattn import PosAttnForSequenceClassification, PosAttnModel, PosAttnModelOutput, PosAttnPreTrainedModel
from .processing_posattn import PosAttnDataCollator, PosAttnProcessor

AutoConfig.register(PosAttnConfig.model_type, PosAttnConfig, exist_ok=True)
AutoModel.register(PosAttnConfig, PosAttnModel, exist_ok=True)
AutoModelForSequenceClassification.register(PosAttnConfig, PosAttnForSequenceClassification, exist_ok=True)
AutoFeatureExtractor.register(PosAttnConfig, PosAttnProcessor, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "PosAttnConfig",
    "PosAttnModel",
    "PosAttnModelOutput",
    "PosAttnPreTrainedModel",
    "PosAttnForSequenceClassification",
    "PosAttnProcessor",
    "PosAttnDataCollator",
]
