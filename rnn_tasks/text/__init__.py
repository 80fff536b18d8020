"""Vocabulary and tokenisation shared by every task (pure python; no lightning or datasets)."""

from .chars import pad_chars, spell
from .tokenize import split_words, tokenize
from .vocab import Vocab

__all__ = ["Vocab", "tokenize", "split_words", "spell", "pad_chars"]
