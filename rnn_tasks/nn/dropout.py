"""Variational ("locked") dropout: one mask per sequence, the same at every step.

Standard dropout draws a new mask at every step, so a unit a sequence relies on flickers
in and out along it; Gal & Ghahramani (2016) draw one mask per sequence and keep it for
all its steps, which regularises a recurrent network better. AWD-LSTM (Merity et al.
2017) applies it to the embeddings, between the layers and to the top layer's outputs.
"""

from __future__ import annotations

from torch import Tensor, nn


def locked_dropout(x: Tensor, p: float, training: bool = True, time_dim: int = 1) -> Tensor:
    """Zero each feature of each sequence with chance `p` at all its steps alike, and scale
    the rest by 1 / (1 - p); the identity when not `training` or `p == 0`.

    `x` has its time on `time_dim` (1 for (B, T, C), 0 for (T, B, C)); a 2-D `x` (B, C), one
    step, gets a mask per row and feature, as standard dropout.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    shape = list(x.shape)
    if x.dim() > 2:
        shape[time_dim] = 1  # one draw, broadcast over the steps
    mask = x.new_empty(shape).bernoulli_(1.0 - p).div_(1.0 - p)
    return x * mask


class LockedDropout(nn.Module):
    """`locked_dropout` as a module, in place of `nn.Dropout(p)` for (B, T, C) inputs."""

    def __init__(self, p: float = 0.5, batch_first: bool = True) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p, self.batch_first = p, batch_first

    def forward(self, x: Tensor) -> Tensor:
        return locked_dropout(x, self.p, self.training, 1 if self.batch_first else 0)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def dropout_layer(p: float, variational: bool = False) -> nn.Module:
    """A dropout module over (B, T, C) sequences: locked across steps if `variational`."""
    return LockedDropout(p) if variational else nn.Dropout(p)
