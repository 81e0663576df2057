"""Model selection without a validation split: an exponential moving average of the weights, as a Trainer callback.

On datasets of a few hundred rows a validation split of 15-27 rows picks checkpoints by noise. A fixed budget with
the EMA of the weights (Polyak & Juditsky, 1992; as in timm's ModelEmaV2) needs no held-out rows: the model trained on
all training rows is replaced by its average at the end. Built on `torch.optim.swa_utils.AveragedModel`.
"""

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from transformers import TrainerCallback


class WeightAveragingCallback(TrainerCallback):
    r"""Keep $\bar\theta \leftarrow d\,\bar\theta + (1 - d)\,\theta$ after every optimizer step and load $\bar\theta$
    into the model when training ends (so evaluation, `save_model` and the test score all use the average).

    Args:
        decay: the EMA decay d per optimizer step, in (0, 1).
    """

    def __init__(self, decay: float = 0.99):
        if not 0 < decay < 1:
            raise ValueError(f"`decay` must be in (0, 1), got {decay!r}.")
        self.decay = decay
        self.averaged: AveragedModel | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        # Buffers are averaged too (`use_buffers`), so norms with running statistics stay consistent with the weights.
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.averaged.update_parameters(model)

    @torch.no_grad()
    def on_train_end(self, args, state, control, model=None, **kwargs):
        for target, source in zip(model.state_dict().values(), self.averaged.module.state_dict().values()):
            target.copy_(source)


__all__ = ["WeightAveragingCallback"]
