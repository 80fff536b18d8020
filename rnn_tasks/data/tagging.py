"""POS tagging data: sentences of words with one tag each (B batch, T time)."""

from __future__ import annotations

from functools import partial
from os import PathLike

import datasets

from ..text import pad_chars
from ..text.batching import IGNORE_INDEX, pad_right
from ..text.pipeline import TextPipeline
from .sources import TagColumn, check_choice, load_pos, read_pos_file
from .words import WordsDataModule


def encode_tagged(batch: dict, pipeline: TextPipeline, tag_ids: dict[str, int]) -> dict:
    """A batch of sentences (``tokens``, ``tags``) -> word ids, character ids, tag ids and
    the words as written; a sentence without words has nothing to tag and is left out."""
    kept = [i for i, words in enumerate(batch["tokens"]) if words]
    words = [batch["tokens"][i] for i in kept]
    return {
        "ids": [pipeline.ids(w) for w in words],
        "chars": [pipeline.spell(w) for w in words],
        "tags": [[tag_ids[t] for t in batch["tags"][i]] for i in kept],
        "words": words,
    }


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
        batch_size, eval_batch_size, num_workers, num_proc, min_freq, max_vocab_size, seed,
        test_file:
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
        num_proc: int | None = None,
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
            num_proc=num_proc,
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

    def _load_records(self) -> dict[str, datasets.Dataset]:
        ds = load_pos(
            self.path, self.hub, self.hub_config, self.builtin, self.tag_column, self.seed
        )
        return dict(ds)

    def _read_test_file(self, path: str | PathLike) -> datasets.Dataset:
        return read_pos_file(path, self.tag_column, line=True)

    def _fit(self, records: dict[str, datasets.Dataset]) -> None:
        self._fit_words(records["train"]["tokens"][:])
        self.tags = sorted({t for split in records.values() for ts in split["tags"] for t in ts})

    def _adopt(self, metadata: dict) -> None:
        self._adopt_words(metadata)
        self.tags = list(metadata["tags"])

    def metadata(self) -> dict:
        if self.vocab is None or self.tags is None:
            raise RuntimeError("metadata() needs setup() first")
        return {**self._words_metadata(), "tags": list(self.tags)}

    def _make_dataset(self, split: str, records: datasets.Dataset) -> datasets.Dataset:
        self._check_known(split, records, "tags", self.tags, "tag")
        tag_ids = {t: i for i, t in enumerate(self.tags)}
        return self._encode(records, encode_tagged, pipeline=self.pipeline, tag_ids=tag_ids)

    def _collate_fn(self):
        return partial(collate_tagging, pad_id=self.vocab.pad_id)
