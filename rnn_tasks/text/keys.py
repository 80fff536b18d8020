"""How a word is looked up in a word vocabulary: its key, which may fold case and digits."""

from __future__ import annotations

import re

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
