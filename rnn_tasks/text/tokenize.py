"""Word tokenisers: a regex tokenizer for raw text, a whitespace split for pre-tokenised text."""

from __future__ import annotations

import re

# Alternatives are tried in order at each position, so the specific shapes come first.
# Case-insensitive, so a text splits the same way lowercased or not (WWW.WIN.COM).
_TOKEN = re.compile(
    r"""
    (?:https?://|www\.)[^\s<>"]*[^\s<>".,;:!?'")\]]   # URL; trailing sentence punctuation dropped
    | [\w.+-]+@\w[\w-]*(?:\.[\w-]+)+                  # e-mail address
    | \w[\w-]*(?:\.[\w-]+)*\.(?:com|net|org|co\.uk|uk|biz|info)\b  # bare domain: txt.com
    | [£$€¥]\d+(?:[.,]\d+)*                           # money: £100, $1,000.50
    | \d+(?:[.,:]\d+)+                                # number with separators: 3.14, 1,000, 10:30
    | \w+(?:['’-]\w+)*                                # word with inner ' or -: don't, e-mail
    | \S                                              # any other character is its own token
    """,
    re.VERBOSE | re.IGNORECASE,
)


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Splits raw text (an SMS, a review) into words, numbers and punctuation.

    >>> tokenize("Win £100 now!! Call 0800-123, see www.x.com. I'm 3.5 km away")
    ['win', '£100', 'now', '!', '!', 'call', '0800-123', ',', 'see', 'www.x.com', '.', "i'm", '3.5', 'km', 'away']
    """  # noqa: E501
    if lowercase:
        text = text.lower()
    return _TOKEN.findall(text)


def split_words(text: str, lowercase: bool = False) -> list[str]:
    """Whitespace split, for text that is already tokenised (PTB, WikiText)."""
    if lowercase:
        text = text.lower()
    return text.split()
