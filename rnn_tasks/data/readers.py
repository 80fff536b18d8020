"""Parsers for local data files: CoNLL-U treebanks, labelled TSV, plain text lines.

Each yields plain python records as it reads (`iter_*`, what `arrow.read_arrow` writes to
an Arrow table without holding the file's records) or returns them all (`read_*`), and
raises `DataFormatError` with the file and line number on malformed input. Files are
UTF-8; a leading byte-order mark is dropped (Windows editors write one), so it never
becomes part of the first label or word.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from os import PathLike
from pathlib import Path

from .errors import DataFormatError

_MULTIWORD_ID = re.compile(r"\d+-\d+")
_EMPTY_NODE_ID = re.compile(r"\d+\.\d+")


def _check_file(path: str | PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: no file at {path}")
    return path


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line end) of a UTF-8 file.

    Decoding line by line, rather than through a text-mode file, lets a byte that is not
    UTF-8 be reported at its line instead of as an offset into a read buffer.
    """
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise not_utf8(path, lineno, raw, err) from None
            yield lineno, line.rstrip("\r\n")


def not_utf8(path: Path, lineno: int, raw: bytes, err: UnicodeDecodeError) -> DataFormatError:
    """The error for line `lineno` (`raw`, its bytes) of `path` that is not UTF-8."""
    return DataFormatError(
        path,
        lineno,
        f"not UTF-8 text: byte {raw[err.start]:#04x}, byte {err.start + 1} of the line "
        f"(re-save the file as UTF-8)",
    )


def read_conllu(path: str | PathLike) -> list[dict]:
    """All the sentences of a CoNLL-U file (`iter_conllu`)."""
    return list(iter_conllu(path))


def iter_conllu(path: str | PathLike) -> Iterator[dict]:
    """Reads a CoNLL-U file (https://universaldependencies.org/format.html).

    Multi-word token lines (ID ``3-4``) and empty nodes (ID ``5.1``) are skipped: the
    syntactic words are the tokens.

    Yields:
        One ``{"tokens": [...], "upos": [...], "xpos": [...], "line": n}`` per sentence,
        ``line`` being the line of its first word.

    Raises:
        FileNotFoundError: If there is no file at ``path``.
        DataFormatError: On a word line without 10 tab-separated columns, or with a bad ID.
    """
    path = _check_file(path, "CoNLL-U treebank file")
    tokens: list[str] = []
    upos: list[str] = []
    xpos: list[str] = []
    first_line = 0
    for lineno, line in _numbered_lines(path):
        if not line.strip():  # a blank line ends a sentence
            if tokens:
                yield {"tokens": tokens, "upos": upos, "xpos": xpos, "line": first_line}
                tokens, upos, xpos = [], [], []
            continue
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise DataFormatError(
                path,
                lineno,
                f"expected 10 tab-separated CoNLL-U columns (ID FORM LEMMA UPOS XPOS FEATS "
                f"HEAD DEPREL DEPS MISC), found {len(cols)}",
            )
        word_id = cols[0]
        if _MULTIWORD_ID.fullmatch(word_id) or _EMPTY_NODE_ID.fullmatch(word_id):
            continue
        if not word_id.isdigit():
            raise DataFormatError(
                path,
                lineno,
                f"bad word ID {word_id!r}: expected an integer, a range like '3-4' "
                f"or an empty node like '5.1'",
            )
        if int(word_id) != len(tokens) + 1:
            raise DataFormatError(
                path,
                lineno,
                f"word ID {word_id} out of sequence: expected {len(tokens) + 1} "
                f"(is the blank line between two sentences missing?)",
            )
        if not tokens:
            first_line = lineno
        tokens.append(cols[1])
        upos.append(cols[3])
        xpos.append(cols[4])
    if tokens:  # the last sentence may lack its trailing blank line
        yield {"tokens": tokens, "upos": upos, "xpos": xpos, "line": first_line}


def read_labelled_tsv(path: str | PathLike) -> list[dict]:
    """All the examples of a ``label<TAB>text`` file (`iter_labelled_tsv`)."""
    return list(iter_labelled_tsv(path))


def iter_labelled_tsv(path: str | PathLike) -> Iterator[dict]:
    """Reads ``label<TAB>text`` lines (the SMS Spam Collection format); blank lines skipped.

    Yields:
        One ``{"text": str, "label": str, "line": n}`` per line, text and label stripped.

    Raises:
        FileNotFoundError: If there is no file at ``path``.
        DataFormatError: On a line without a tab, or with an empty label or text.
    """
    path = _check_file(path, "labelled TSV file (label<TAB>text lines)")
    for lineno, line in _numbered_lines(path):
        if not line.strip():
            continue
        if "\t" not in line:
            raise DataFormatError(path, lineno, "expected 'label<TAB>text', found no tab character")
        label, text = (part.strip() for part in line.split("\t", 1))
        if not label:
            raise DataFormatError(path, lineno, "empty label before the tab")
        if not text:
            raise DataFormatError(path, lineno, f"empty text after label {label!r}")
        yield {"text": text, "label": label, "line": lineno}


def read_lines(path: str | PathLike) -> list[str]:
    """Reads a text corpus: one stripped line per entry, empty lines left out."""
    return [record["text"] for record in iter_lines(path)]


def iter_lines(path: str | PathLike) -> Iterator[dict]:
    """One ``{"text": line}`` per non-empty line of a text corpus, stripped."""
    path = _check_file(path, "text corpus file")
    for _, line in _numbered_lines(path):
        if line := line.strip():
            yield {"text": line}
