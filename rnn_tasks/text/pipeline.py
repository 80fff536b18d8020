"""`TextPipeline`: text to the ids a model reads, the one way training read it.

The data module builds it from its settings and the training data, the task keeps it (its
parts travel in the checkpoint, and in an export as `to_dict()`), and prediction, evaluation
and `rnn_tasks.load_model` read text through it, so what a model sees when it is used is
exactly what it saw when it was trained.
"""

from __future__ import annotations

from typing import Literal

from .chars import spell
from .keys import word_ids
from .tokenize import split_words, tokenize, tokenize_ud
from .vocab import Vocab

Tokenizer = Literal["messages", "ud", "whitespace"]
TOKENIZERS = {
    # SMS-style messages: URLs, numbers, emoticons and currency kept whole (`tokenize`);
    # an empty message is one unknown word.
    "messages": lambda text: tokenize(text, lowercase=False) or ["<unk>"],
    "ud": tokenize_ud,  # Universal Dependencies English words (EWT's conventions)
    "whitespace": split_words,  # running text already tokenised (PTB, WikiText)
}


class TextPipeline:
    """Tokeniser -> lookup keys -> word ids, and the words' characters as written.

    Args:
        tokenizer: how raw text becomes words (`TOKENIZERS`).
        vocab: the word vocabulary, by lookup key.
        chars: the character vocabulary, or None for a model that does not spell.
        lowercase, zero_digits: how a word becomes its lookup key (`lookup_keys`).
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        vocab: Vocab,
        chars: Vocab | None = None,
        lowercase: bool = False,
        zero_digits: bool = False,
    ) -> None:
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {sorted(TOKENIZERS)}, got {tokenizer!r}")
        self.tokenizer = tokenizer
        self.vocab = vocab
        self.chars = chars
        self.lowercase = lowercase
        self.zero_digits = zero_digits

    def words(self, text: str) -> list[str]:
        """The words of a raw text, as the training data was cut into words."""
        return TOKENIZERS[self.tokenizer](text)

    def ids(self, words: list[str]) -> list[int]:
        """Word ids by lookup key (see `word_ids`)."""
        return word_ids(words, self.vocab, self.lowercase, self.zero_digits)

    def spell(self, words: list[str]) -> list[list[int]] | None:
        """Each word's character ids, or None without a character vocabulary."""
        return None if self.chars is None else spell(words, self.chars)

    def unknown(self, words: list[str]) -> list[str]:
        """The words that read as the unknown word (the unknown token itself is a word the
        vocabulary has: PTB's text writes `<unk>`)."""
        unk = self.vocab.unk_id
        ids = self.ids(words)
        return [w for w, i in zip(words, ids, strict=True) if i == unk and w != self.vocab.unk]

    def to_dict(self) -> dict:
        """Plain types: a checkpoint's or an export's copy."""
        return {
            "tokenizer": self.tokenizer,
            "vocab": self.vocab.to_dict(),
            "chars": None if self.chars is None else self.chars.to_dict(),
            "lowercase": self.lowercase,
            "zero_digits": self.zero_digits,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TextPipeline:
        chars = d.get("chars")
        return cls(
            d["tokenizer"],
            Vocab.from_dict(d["vocab"]),
            None if chars is None else Vocab.from_dict(chars),
            d.get("lowercase", False),
            d.get("zero_digits", False),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextPipeline) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        chars = "none" if self.chars is None else len(self.chars)
        return (
            f"TextPipeline({self.tokenizer!r}, {len(self.vocab)} words, {chars} characters, "
            f"lowercase={self.lowercase}, zero_digits={self.zero_digits})"
        )
