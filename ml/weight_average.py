"""The swap model's weights averaged over the last steps of training: what swaps use.

A short training (1,500 steps on a CPU) ends on weights that still hop from batch to batch
(Adam with a first-moment decay of 0.5, a batch of 8 crops); an exponential moving average
of them is a steadier model at no training cost. It is a short one (TrainOptions'
``average_decay`` 0.95, about the last 20 steps): at 1,500 steps the model still improves
quickly, and a longer average lags behind it (README, Numbers). The decay is held back early on
(``(1 + t) / (10 + t)``) so the average starts from the trained weights, not the random
initial ones. Every training process keeps its own copy: the weights are the same on each
after every step, so the copies are too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class WeightAverage:
    """An exponential moving average of ``model``'s parameters, updated after each step."""

    def __init__(self, model: nn.Module, decay: float, step: int = 0,
                 saved: dict[str, torch.Tensor] | None = None):
        self.model, self.decay, self.step = model, decay, step
        self.names = [name for name, _ in model.named_parameters()]
        self.live = [p for _, p in model.named_parameters()]
        # A checkpoint from before averages were kept starts its average from its weights.
        self.copies = [(saved[name] if saved and name in saved else p).detach().clone().to(p)
                       for name, p in zip(self.names, self.live, strict=True)]

    def update(self) -> None:
        self.step += 1
        decay = min(self.decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for copy, live in zip(self.copies, self.live, strict=True):
                copy.lerp_(live, 1 - decay)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The averaged weights by parameter name (on the CPU), as a checkpoint stores them."""
        return {name: copy.detach().cpu().contiguous()
                for name, copy in zip(self.names, self.copies, strict=True)}

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The model runs on the averaged weights inside the block (for previews)."""
        kept = [p.detach().clone() for p in self.live]
        _copy_into(self.live, self.copies)
        try:
            yield
        finally:
            _copy_into(self.live, kept)


def _copy_into(targets: list[torch.Tensor], values: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for target, value in zip(targets, values, strict=True):
            target.copy_(value)
