"""A token <-> index mapping that survives a checkpoint as plain python types."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence


class Vocab:
    """Maps tokens to contiguous ids and back.

    Args:
        tokens: The full index list, specials included: token ``i`` gets id ``i``.
        unk: Token that unknown tokens map to; ``None`` makes unknown tokens an error.
        pad: Padding token; ``None`` for data that is never padded (a language-model stream).
        added_from: The first id of tokens added after the vocabulary was built (`extended`:
            words of a pretrained vectors file), which training never saw; ``None`` for none.

    Raises:
        ValueError: If ``tokens`` holds a duplicate, or ``unk`` / ``pad`` is not in it.
    """

    def __init__(
        self,
        tokens: list[str],
        unk: str | None = "<unk>",
        pad: str | None = "<pad>",
        added_from: int | None = None,
    ) -> None:
        self.itos: list[str] = list(tokens)
        self._stoi: dict[str, int] = {}
        for i, token in enumerate(self.itos):
            if token in self._stoi:
                raise ValueError(f"duplicate token {token!r} at ids {self._stoi[token]} and {i}")
            self._stoi[token] = i
        for role, special in (("unk", unk), ("pad", pad)):
            if special is not None and special not in self._stoi:
                raise ValueError(f"{role} token {special!r} is not in the token list")
        if added_from is not None and not 0 < added_from <= len(self.itos):
            raise ValueError(f"added_from={added_from} is not an id of the {len(self.itos)} tokens")
        self.unk = unk
        self.pad = pad
        self.added_from = added_from

    @classmethod
    def build(
        cls,
        sequences: Iterable[list[str]],
        min_freq: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = ("<pad>", "<unk>"),
        unk: str | None = "<unk>",
        pad: str | None = "<pad>",
    ) -> Vocab:
        """Counts tokens and keeps the frequent ones.

        Order: ``specials`` first, then by descending frequency, ties alphabetical, so the
        same data always gives the same ids. A special that occurs in the data (PTB's literal
        ``<unk>``) is not counted again: it keeps its special id.

        Args:
            sequences: Token lists, e.g. the sentences of the training split.
            min_freq: Drop tokens seen fewer times than this.
            max_size: Largest vocabulary size, specials included; ``None`` for no limit.
            specials: Tokens placed first, whatever their frequency.
            unk: Unknown-token special (must be in ``specials``) or ``None``.
            pad: Padding special (must be in ``specials``) or ``None``.
        """
        counts: Counter[str] = Counter()
        for sequence in sequences:
            counts.update(sequence)
        return cls.from_counts(counts, min_freq, max_size, specials, unk, pad)

    @classmethod
    def from_counts(
        cls,
        counts: Mapping[str, int],
        min_freq: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = ("<pad>", "<unk>"),
        unk: str | None = "<unk>",
        pad: str | None = "<pad>",
    ) -> Vocab:
        """`build` from tokens counted already (a corpus too large to hold as token lists)."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        if max_size is not None and max_size < len(specials):
            raise ValueError(
                f"max_size={max_size} leaves no room for the {len(specials)} specials {specials}"
            )
        special_set = set(specials)
        words = sorted(
            (w for w, c in counts.items() if c >= min_freq and w not in special_set),
            key=lambda w: (-counts[w], w),
        )
        if max_size is not None:
            words = words[: max_size - len(specials)]
        return cls([*specials, *words], unk=unk, pad=pad)

    def extended(self, tokens: Iterable[str]) -> Vocab:
        """This vocabulary with `tokens` it lacks appended in their order, marked as added
        (`added_from`): words a model meets only through pretrained vectors."""
        new = list(dict.fromkeys(t for t in tokens if t not in self._stoi))
        return Vocab([*self.itos, *new], unk=self.unk, pad=self.pad, added_from=len(self))

    @property
    def num_added(self) -> int:
        """How many tokens `extended` added (0 for a built vocabulary)."""
        return 0 if self.added_from is None else len(self) - self.added_from

    @property
    def pad_id(self) -> int | None:
        """Id of the padding token, or ``None`` without one."""
        return None if self.pad is None else self._stoi[self.pad]

    @property
    def unk_id(self) -> int | None:
        """Id of the unknown token, or ``None`` without one."""
        return None if self.unk is None else self._stoi[self.unk]

    def index(self, token: str) -> int:
        """Id of ``token``; ``KeyError`` if it is not in the vocabulary (no unk fallback)."""
        try:
            return self._stoi[token]
        except KeyError:
            raise KeyError(f"token {token!r} is not in the vocabulary") from None

    def encode(self, tokens: list[str]) -> list[int]:
        """Maps tokens to ids; unknown tokens get ``unk_id`` (``KeyError`` without an unk)."""
        stoi = self._stoi
        if self.unk is None:
            return [self.index(t) for t in tokens]
        unk_id = stoi[self.unk]
        return [stoi.get(t, unk_id) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Maps ids (ints or a 1-D tensor) back to tokens."""
        return [self.itos[int(i)] for i in ids]

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self._stoi

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self.to_dict() == other.to_dict()  # tokens, specials and added_from

    def __repr__(self) -> str:
        added = "" if self.added_from is None else f", added_from={self.added_from}"
        return f"Vocab(size={len(self)}, unk={self.unk!r}, pad={self.pad!r}{added})"

    def to_dict(self) -> dict:
        """Plain python types only, so a checkpoint loads under ``weights_only=True``."""
        d = {"itos": list(self.itos), "unk": self.unk, "pad": self.pad}
        if self.added_from is not None:  # absent otherwise: older checkpoints stay equal
            d["added_from"] = self.added_from
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Vocab:
        """Inverse of `to_dict`."""
        return cls(list(d["itos"]), d.get("unk"), d.get("pad"), d.get("added_from"))
