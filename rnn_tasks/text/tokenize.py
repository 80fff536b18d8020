"""Word tokenisers: regex tokenizers for raw text (messages; UD English), and a whitespace
split for pre-tokenised text."""

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


# UD English (EWT) conventions: clitics split off (do|n't, John|'s), hyphens and currency
# signs are tokens of their own, abbreviations keep their periods (U.S., Dr.).
_UD_TOKEN = re.compile(
    r"""
    (?:https?://|www\.)[^\s<>"]*[^\s<>".,;:!?'")\]]   # URL; trailing sentence punctuation dropped
    | [\w.+-]+@\w[\w-]*(?:\.[\w-]+)+                  # e-mail address
    | (?:[a-z]\.){2,}                                 # U.S., e.g., p.m.
    | (?:mr|mrs|ms|dr|prof|st|jr|sr|inc|co|corp|ltd|vs|etc|mt|jan|feb|mar|apr|jun|jul|aug
        |sep|sept|oct|nov|dec)\.(?!\w)                # Dr. Smith, Acme Inc.
    | no\.(?=\s*\d)                                    # No. 5 (but "the answer is no.")
    | (?-i:[A-Z]\.(?=\s+[A-Z]))                        # an initial: J. Smith (but "plan B.")
    | \d+(?:st|nd|rd|th|['’]s)\b                        # 22nd, the 70's
    | \w[\w-]*(?:\.[\w-]+)*\.(?:com|net|org|edu|gov|co\.uk|uk|biz|info)\b  # bare domain
    | \d+(?:[.,:/-]\d+)*                               # 1,250.50, 10:30, 02/13/2001, 755-1109
    | [:;]-?[()dp](?!\w)                               # :) ;-)
    | \w+?(?=n['’]t\b)                                # do of don't, ca of can't, wo of won't
    | n['’]t\b                                         # n't
    | ['’](?:s|re|ve|ll|d|m)\b                         # 's 're 've 'll 'd 'm
    | \w+                                             # a word
    | \.{2,}|[!?]+|-{2,}                               # ... !!! -- as one token each
    | \S                                              # any other character is its own token
    """,
    re.VERBOSE | re.IGNORECASE,
)


def tokenize_ud(text: str) -> list[str]:
    """Splits raw English into words as Universal Dependencies' English treebanks do, so a
    tagger trained on EWT meets the words it was trained on.

    >>> tokenize_ud("John's car isn't here -- it cost $1,250.50 in the U.S.")
    ['John', "'s", 'car', 'is', "n't", 'here', '--', 'it', 'cost', '$', '1,250.50', 'in', 'the', 'U.S.']
    """  # noqa: E501
    return _UD_TOKEN.findall(text)


def split_words(text: str, lowercase: bool = False) -> list[str]:
    """Whitespace split, for text that is already tokenised (PTB, WikiText)."""
    if lowercase:
        text = text.lower()
    return text.split()
