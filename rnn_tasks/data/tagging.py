"""POS tagging data: sentences of words with one tag each (B batch, T time)."""

from __future__ import annotations

from functools import partial
from os import PathLike

from ..text import pad_chars
from ..text.batching import IGNORE_INDEX, pad_right
from .readers import read_conllu
from .sources import TagColumn, check_choice, load_pos
from .words import WordsDataModule


def collate_tagging(items: list[dict], pad_id: int) -> dict:
    """Encoded sentences -> ``tokens`` (B, T) padded with ``pad_id``, ``lengths`` (B,),
    ``tags`` (B, T) with -100 on padding, the characters of every word ``chars``
    (B, T, L) padded with 0 (the char vocabulary's pad), and the raw ``words``."""
    tokens, lengths = pad_right([it["ids"] for it in items], pad_id)  # (B, T), (B,)
    tags, _ = pad_right([it["tags"] for it in items], IGNORE_INDEX)  # (B, T)
    chars = pad_chars([it["chars"] for it in items], tokens.shape[1])  # (B, T, L)
    return {
        "tokens": tokens,
        "lengths": lengths,
        "tags": tags,
        "chars": chars,
        "words": [it["words"] for it in items],
    }


class TaggingDataModule(WordsDataModule):
    """Sentences with one tag per word, from a CoNLL-U treebank (see `load_pos`).

    Batches: ``{"tokens": (B, T), "lengths": (B,), "tags": (B, T), "words": list[list[str]]}``.
    ``words`` keeps the original spelling and ``chars`` (B, T, L) its characters as ids of
    a character vocabulary built from the training words (for a character encoder);
    ``lowercase`` and ``zero_digits`` only affect the word vocabulary lookup. ``tags`` are
    the sorted tag names of all loaded splits (or the adopted ones); metadata is
    ``{"vocab": ..., "tags": [...], "chars": ...}``.

    Args:
        path: A ``.conllu`` file or a folder of ``*-ud-{train,dev,test}.conllu`` files.
        hub: Hub dataset id, used when neither ``path`` nor ``builtin`` is given.
        hub_config: Hub config (the treebank).
        builtin: Use the packaged demo treebank.
        tag_column: ``"upos"`` or ``"xpos"``.
        lowercase: Lowercase words for the vocabulary lookup (`lookup_keys`).
        zero_digits: Read every digit as 0 in the vocabulary lookup (`lookup_keys`).
        pretrained_words, pretrained_words_limit: Add the first words of a GloVe /
            word2vec text file to the word vocabulary (`WordsDataModule`).
        batch_size, eval_batch_size, num_workers, min_freq, max_vocab_size, seed, test_file:
            See `TextDataModule`; ``test_file`` is a CoNLL-U file.
    """

    metadata_keys = ("vocab", "tags", "chars")
    tokenizer = "ud"  # raw text at prediction; the data itself comes as words
    fixed_settings = ("tag_column", "seed", "lowercase", "zero_digits")

    def __init__(
        self,
        path: str | None = None,
        *,
        hub: str | None = "commul/universal_dependencies",
        hub_config: str | None = "en_ewt",
        builtin: bool = False,
        tag_column: TagColumn = "upos",
        lowercase: bool = False,
        zero_digits: bool = False,
        pretrained_words: str | None = None,
        pretrained_words_limit: int = 100_000,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        min_freq: int = 1,
        max_vocab_size: int | None = None,
        seed: int = 0,
        test_file: str | None = None,
    ) -> None:
        super().__init__(
            lowercase=lowercase,
            zero_digits=zero_digits,
            pretrained_words=pretrained_words,
            pretrained_words_limit=pretrained_words_limit,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            min_freq=min_freq,
            max_vocab_size=max_vocab_size,
            seed=seed,
            test_file=test_file,
        )
        check_choice("tag_column", tag_column, ("upos", "xpos"))
        self.path = path
        self.hub = hub
        self.hub_config = hub_config
        self.builtin = builtin
        self.tag_column = tag_column
        self.tags: list[str] | None = None

    def _load_records(self) -> dict[str, list]:
        ds = load_pos(
            self.path, self.hub, self.hub_config, self.builtin, self.tag_column, self.seed
        )
        return {split: ds[split].to_list() for split in ds}

    def _read_test_file(self, path: str | PathLike) -> list:
        return [
            {"tokens": s["tokens"], "tags": s[self.tag_column], "line": s["line"]}
            for s in read_conllu(path)
        ]

    def _fit(self, records: dict[str, list]) -> None:
        self._fit_words([r["tokens"] for r in records["train"]])
        self.tags = sorted({t for split in records.values() for r in split for t in r["tags"]})

    def _adopt(self, metadata: dict) -> None:
        self._adopt_words(metadata)
        self.tags = list(metadata["tags"])

    def metadata(self) -> dict:
        if self.vocab is None or self.tags is None:
            raise RuntimeError("metadata() needs setup() first")
        return {**self._words_metadata(), "tags": list(self.tags)}

    def _make_dataset(self, split: str, records: list) -> list[dict]:
        self._check_known(split, records, lambda r: r["tags"], self.tags, "tag")
        tag_ids = {t: i for i, t in enumerate(self.tags)}
        return [
            {
                **self._encode_words(r["tokens"]),
                "tags": [tag_ids[t] for t in r["tags"]],
                "words": r["tokens"],
            }
            for r in records
            if r["tokens"]  # an empty sentence has nothing to tag
        ]

    def _collate_fn(self):
        return partial(collate_tagging, pad_id=self.vocab.pad_id)
