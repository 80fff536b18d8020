"""Right-padding of variable-length id lists into batch tensors (B batch, T time)."""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE_INDEX = -100  # the default ignore_index of torch.nn.functional.cross_entropy


def pad_right(sequences: list[list[int]], value: int) -> tuple[Tensor, Tensor]:
    """Stacks id lists into a right-padded ``(B, T)`` LongTensor and their ``(B,)`` lengths."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    out = torch.full((len(sequences), int(lengths.max())), value, dtype=torch.long)  # (B, T)
    for i, s in enumerate(sequences):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out, lengths
