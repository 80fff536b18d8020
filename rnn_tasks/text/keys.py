"""How a word is looked up in a word vocabulary: its key, which may fold case and digits."""

from __future__ import annotations

import re

from .vocab import Vocab

_DIGIT = re.compile(r"\d")


def lookup_keys(words: list[str], lowercase: bool = False, zero_digits: bool = False) -> list[str]:
    """The vocabulary keys of `words` as written.

    ``zero_digits`` reads every digit as 0 (Lample et al. 2016), so that "£150" and "£250",
    or two phone numbers, share one embedding by their shape; a character encoder still
    sees the digits themselves.

    >>> lookup_keys(["Call", "08712460324", "£1.50"], lowercase=True, zero_digits=True)
    ['call', '00000000000', '£0.00']
    """
    if lowercase:
        words = [w.lower() for w in words]
    if zero_digits:
        words = [_DIGIT.sub("0", w) for w in words]
    return list(words)


def word_ids(words: list[str], vocab: Vocab, lowercase: bool, zero_digits: bool) -> list[int]:
    """The ids of `words` in `vocab` by their `lookup_keys`.

    In a vocabulary extended with pretrained words (`Vocab.extended`), a key it lacks is
    also tried lowercased among those words, since files such as GloVe are lowercase:
    an unseen "Paris" reads as GloVe's "paris" rather than `<unk>` (Lample et al. 2016).
    """
    keys = lookup_keys(words, lowercase, zero_digits)
    if vocab.added_from is not None and not lowercase:
        keys = [k if k in vocab or not _is_added(k.lower(), vocab) else k.lower() for k in keys]
    return vocab.encode(keys)


def _is_added(key: str, vocab: Vocab) -> bool:
    return key in vocab and vocab.index(key) >= vocab.added_from
