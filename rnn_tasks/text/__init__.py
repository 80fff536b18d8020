"""Vocabulary and tokenisation shared by every task (pure python; no lightning or datasets)."""

from .chars import pad_chars, spell
from .keys import lookup_keys, word_ids
from .tokenize import split_words, tokenize, tokenize_ud
from .vocab import Vocab

__all__ = [
    "Vocab",
    "tokenize",
    "tokenize_ud",
    "split_words",
    "lookup_keys",
    "word_ids",
    "spell",
    "pad_chars",
]
