"""Words as character ids, for a character-level word encoder (B batch, T words, L chars)."""

from __future__ import annotations

import torch
from torch import Tensor

from .vocab import Vocab


def spell(words: list[str], chars: Vocab) -> list[list[int]]:
    """The character ids of each word (an empty word reads as one unknown character)."""
    return [chars.encode(list(w)) or [chars.unk_id] for w in words]


def pad_chars(sentences: list[list[list[int]]], num_words: int) -> Tensor:
    """Spelled sentences -> (B, T, L) ids, 0 (the char vocabulary's pad) beyond each end."""
    L = max((len(w) for s in sentences for w in s), default=1)
    out = torch.zeros(len(sentences), num_words, L, dtype=torch.long)
    for i, sentence in enumerate(sentences):
        for t, ids in enumerate(sentence):
            out[i, t, : len(ids)] = torch.tensor(ids)
    return out
