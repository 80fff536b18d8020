"""Several trained tagging or classification tasks as one: their probabilities averaged."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .encoder_tasks import EncoderTask

# What members must share to read a batch and name its outputs alike.
_SHARED = ("vocab", "chars", "labels", "tags", "lowercase", "zero_digits")


class ProbabilityAverage(nn.Module):
    """Averages the members' softmax outputs and returns the log of the average.

    The result stands in for logits: its softmax is the averaged distribution, so losses
    and metrics need no change.
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, *args, **kwargs) -> Tensor:
        log_probs = torch.stack([m(*args, **kwargs).float().log_softmax(-1) for m in self.members])
        return torch.logsumexp(log_probs, 0) - math.log(len(self.members))  # log mean exp


def ensemble(tasks: list[EncoderTask]) -> EncoderTask:
    """One task that predicts with the average of `tasks`' probabilities (a deep ensemble:
    Lakshminarayanan et al. 2017). `predict`, `trainer.test` and `trainer.validate` work as
    for one task; the tasks must be of one kind and read their data alike (vocabulary,
    characters, labels or tags, case and digit lookup)."""
    if not tasks:
        raise ValueError("an ensemble needs at least one task")
    first = tasks[0]
    if not isinstance(first, EncoderTask):
        raise ValueError(
            f"ensembles average tagging or classification tasks, not {type(first).__name__}"
        )
    for i, task in enumerate(tasks[1:], 1):
        if type(task) is not type(first):
            raise ValueError(
                f"task {i} is a {type(task).__name__}, task 0 a {type(first).__name__}"
            )
        differ = [k for k in _SHARED if task.hparams.get(k) != first.hparams.get(k)]
        if differ:
            raise ValueError(f"task {i} reads its data unlike task 0: {', '.join(differ)} differ")
    combined = type(first)(**first.hparams)  # its own metrics; its model is replaced
    combined.model = ProbabilityAverage([t.model for t in tasks])
    return combined.eval()
