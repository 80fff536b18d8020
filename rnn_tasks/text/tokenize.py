"""Word tokenisers: regex tokenizers for raw text (messages; UD English), and a whitespace
split for pre-tokenised text."""

from __future__ import annotations

import re


# Alternatives are tried in order at each position, so the specific shapes come first.
# Case-insensitive, so a text splits the same way lowercased or not (WWW.WIN.COM).
def _alternatives(*patterns: str) -> re.Pattern:
    return re.compile("|".join(patterns), re.IGNORECASE)


# Shapes both tokenizers keep whole.
_URL = r"""(?:https?://|www\.)[^\s<>"]*[^\s<>".,;:!?'")\]]"""  # sentence punctuation dropped
_EMAIL = r"[\w.+-]+@\w[\w-]*(?:\.[\w-]+)+"


def _domain(endings: str) -> str:
    """A bare domain (txt.com) ending in one of `endings` ("com|net")."""
    return rf"\w[\w-]*(?:\.[\w-]+)*\.(?:{endings})\b"


_TOKEN = _alternatives(
    _URL,
    _EMAIL,
    _domain(r"com|net|org|co\.uk|uk|biz|info"),  # the spam results were made with these
    r"[£$€¥]\d+(?:[.,]\d+)*",  # money: £100, $1,000.50
    r"\d+(?:[.,:]\d+)+",  # number with separators: 3.14, 1,000, 10:30
    r"\w+(?:['’-]\w+)*",  # word with inner ' or -: don't, e-mail
    r"\S",  # any other character is its own token
)


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Splits raw text (an SMS, a review) into words, numbers and punctuation.

    >>> tokenize("Win £100 now!! Call 0800-123, see www.x.com. I'm 3.5 km away")
    ['win', '£100', 'now', '!', '!', 'call', '0800-123', ',', 'see', 'www.x.com', '.', "i'm", '3.5', 'km', 'away']
    """  # noqa: E501
    if lowercase:
        text = text.lower()
    return _TOKEN.findall(text)


# Negated auxiliaries as they are written without the apostrophe: dont, cant, wont.
_NT_STEMS = "ai|are|ca|could|did|do|does|had|has|have|is|must|need|should|was|were|wo|would"

# Prefixes EWT keeps joined to their word by a hyphen (e-mail, non-profit); other hyphens
# are tokens of their own (Al|-|Zaman, well|-|known).
_HYPHEN_PREFIXES = "anti|co|counter|cross|e|ex|mid|multi|neo|non|post|pre|pro|re|semi|sub|vice"

# UD English (EWT) conventions: clitics split off (do|n't, John|'s), hyphens and currency
# signs are tokens of their own, abbreviations keep their periods (U.S., Dr.) except at
# the end of the text, where the period is the sentence's (in the U.S|.).
_END = r"(?!\s*$)"
_UD_TOKEN = _alternatives(
    _URL,
    _EMAIL,
    rf"(?:[a-z]\.){{2,}}(?![a-z]\.){_END}",  # U.S., e.g., p.m.
    r"(?:[a-z]\.)+[a-z](?=\.\s*$)",  # U.S of "in the U.S." at the end
    r"(?:mr|mrs|ms|dr|prof|st|jr|sr|inc|co|corp|ltd|vs|etc|mt|jan|feb|mar|apr|jun|jul|aug"
    rf"|sep|sept|oct|nov|dec)\.(?!\w){_END}",  # Dr. Smith, Acme Inc.
    r"no\.(?=\s*\d)",  # No. 5 (but "the answer is no.")
    r"(?-i:[A-Z]\.(?=\s+[A-Z]))",  # an initial: J. Smith (but "plan B.")
    r"\d+(?:st|nd|rd|th|s|['’]s)\b",  # 22nd, the 1970s, the 70's
    r"o['’]clock\b",
    rf"\b(?:{_HYPHEN_PREFIXES})-\w+",  # e-mail, non-profit
    r"(?-i:\b[A-Z]+&[A-Z]+\b)",  # AT&T, PG&E
    _domain(r"com|net|org|edu|gov|co\.uk|uk|biz|info"),
    r"\d+(?:[.,:/-]\d+)*",  # 1,250.50, 10:30, 02/13/2001, 755-1109
    r"[:;]-?[()dp](?!\w)|(?<![\w<])<3(?![\w.,])",  # :) ;-) <3 (but x<3, <30)
    r"\w+?(?=n['’]t\b)",  # do of don't, ca of can't, wo of won't
    # The same written without the apostrophe, which EWT splits too (do|nt, I|m,
    # can|not). Forms that are mostly words of their own stay whole ("its", "lets",
    # "your"); "cant" and "wont" are rare as words, and EWT splits every one.
    rf"\b(?:{_NT_STEMS})(?=nt\b)",
    r"\b(?:can(?=not\b)|gon(?=na\b)|wan(?=na\b)|got(?=ta\b)|out(?=ta\b))",
    r"(?-i:\b[Ii](?=(?:m|ve)\b))",  # I|m, I|ve (but IM, an instant message)
    r"\b(?:you|they)(?=re\b)|\b(?:that|what|there|here)(?=s\b)",
    r"n['’]t\b",  # n't
    r"['’](?:s|re|ve|ll|d|m)\b",  # 's 're 've 'll 'd 'm
    r"\w+",  # a word
    r"\.{2,}|[!?]+|-{2,}|<<|>>|''|``",  # ... !!! -- << '' as one token each
    r"\S",  # any other character is its own token
)


def tokenize_ud(text: str) -> list[str]:
    """Splits raw English into words as Universal Dependencies' English treebanks do, so a
    tagger trained on EWT meets the words it was trained on.

    >>> tokenize_ud("John's car isn't here -- it cost $1,250.50 in the U.S. last year")
    ['John', "'s", 'car', 'is', "n't", 'here', '--', 'it', 'cost', '$', '1,250.50', 'in', 'the', 'U.S.', 'last', 'year']
    """  # noqa: E501
    return _UD_TOKEN.findall(text)


def split_words(text: str, lowercase: bool = False) -> list[str]:
    """Whitespace split, for text that is already tokenised (PTB, WikiText)."""
    if lowercase:
        text = text.lower()
    return text.split()
