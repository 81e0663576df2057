"""posattn: a Hugging Face Transformers encoder for multimodal sequences, with positional encoding done right.

Importing the package registers the config, the models and the processor with the Auto classes.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    AutoProcessor,
)

from .configuration_posattn import PosAttnConfig
from .modeling_posattn import (
    PosAttnForPreTraining,
    PosAttnForPreTrainingOutput,
    PosAttnForSequenceClassification,
    PosAttnModel,
    PosAttnModelOutput,
    PosAttnPreTrainedModel,
)
from .processing_posattn import PosAttnProcessor

AutoConfig.register(PosAttnConfig.model_type, PosAttnConfig, exist_ok=True)
AutoModel.register(PosAttnConfig, PosAttnModel, exist_ok=True)
AutoModelForSequenceClassification.register(PosAttnConfig, PosAttnForSequenceClassification, exist_ok=True)
AutoModelForPreTraining.register(PosAttnConfig, PosAttnForPreTraining, exist_ok=True)
AutoFeatureExtractor.register(PosAttnConfig, PosAttnProcessor, exist_ok=True)
AutoProcessor.register(PosAttnConfig, PosAttnProcessor, exist_ok=True)

# Saved folders are self-contained remote-code checkpoints: `save_pretrained` copies the flat code files and writes
# `auto_map`, so that `AutoModel.from_pretrained(repo, trust_remote_code=True)` works without this package installed.
# `PosAttnConfig.save_pretrained` completes `config.json`'s auto_map (AutoConfig, AutoModel,
# AutoModelForSequenceClassification, AutoModelForPreTraining) whichever class is saved; the processor's file lists
# AutoFeatureExtractor and AutoProcessor.
PosAttnConfig.register_for_auto_class("AutoConfig")
PosAttnModel.register_for_auto_class("AutoModel")
PosAttnForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
PosAttnForPreTraining.register_for_auto_class("AutoModelForPreTraining")
PosAttnProcessor.register_for_auto_class("AutoFeatureExtractor")

__version__ = "0.1.0"

__all__ = [
    "PosAttnConfig",
    "PosAttnModel",
    "PosAttnModelOutput",
    "PosAttnPreTrainedModel",
    "PosAttnForSequenceClassification",
    "PosAttnForPreTraining",
    "PosAttnForPreTrainingOutput",
    "PosAttnProcessor",
]
