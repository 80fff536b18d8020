"""Vocabulary and tokenisation shared by every task (pure python; no lightning or datasets)."""

from .tokenize import split_words, tokenize
from .vocab import Vocab

__all__ = ["Vocab", "tokenize", "split_words"]
