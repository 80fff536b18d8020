"""Text classification data: one label per message (B batch, T time)."""

from __future__ import annotations

import logging
from collections import Counter
from functools import partial
from os import PathLike

import datasets
import torch

from ..text import pad_chars
from ..text.batching import pad_right
from ..text.pipeline import TOKENIZERS, TextPipeline
from .sources import load_spam, read_spam_file
from .words import WordsDataModule

log = logging.getLogger(__name__)


def encode_labelled(batch: dict, pipeline: TextPipeline, label_ids: dict[str, int]) -> dict:
    """A batch of messages (``text``, ``label``) -> word ids, character ids, label ids."""
    words = [pipeline.words(text) for text in batch["text"]]
    return {
        "ids": [pipeline.ids(w) for w in words],
        "chars": [pipeline.spell(w) for w in words],
        "label": [label_ids[label] for label in batch["label"]],
    }


def collate_classification(items: list[dict], pad_id: int) -> dict:
    """Encoded messages -> ``tokens`` (B, T) padded with ``pad_id``, ``lengths`` (B,),
    ``label`` (B,) and the characters of every word ``chars`` (B, T, L), 0-padded."""
    tokens, lengths = pad_right([it["ids"] for it in items], pad_id)  # (B, T), (B,)
    label = torch.tensor([it["label"] for it in items], dtype=torch.long)  # (B,)
    chars = pad_chars([it["chars"] for it in items], tokens.shape[1])  # (B, T, L)
    return {"tokens": tokens, "lengths": lengths, "label": label, "chars": chars}


class ClassificationDataModule(WordsDataModule):
    """Labelled messages (SMS spam, see `load_spam`), tokenised with `tokenize`.

    Batches: ``{"tokens": (B, T), "lengths": (B,), "label": (B,)}``. A message without
    words (from the Hub; a local file's empty text is an error, more often a broken line
    than a message) is one ``<unk>`` token, so every length is >= 1. ``labels`` are
    sorted (ham=0, spam=1); metadata is ``{"vocab": ..., "labels": [...]}``.

    Args:
        path: A ``label<TAB>text`` file, or a folder holding ``SMSSpamCollection``.
        hub: Hub dataset id, used when neither ``path`` nor ``builtin`` is given.
        builtin: Use the packaged demo messages.
        val_fraction: Share of each class held out for validation (single-split sources).
        test_fraction: Share of each class held out for test (single-split sources).
        group_duplicates: Keep every copy of a repeated message in one split (`load_spam`).
        lowercase: Lowercase words for the vocabulary lookup (`lookup_keys`).
        zero_digits: Read every digit as 0 in the vocabulary lookup (`lookup_keys`).
        pretrained_words, pretrained_words_limit: Add the first words of a GloVe /
            word2vec text file to the word vocabulary (`WordsDataModule`).
        batch_size, eval_batch_size, num_workers, num_proc, min_freq, max_vocab_size, seed,
        test_file:
            See `TextDataModule`; ``test_file`` is a ``label<TAB>text`` file.
    """

    metadata_keys = ("vocab", "labels", "chars")
    tokenizer = "messages"
    fixed_settings = (
        "val_fraction", "test_fraction", "group_duplicates", "seed", "lowercase", "zero_digits"
    )  # fmt: skip
    source_settings = ("hub", "builtin")
    legacy_defaults = {"group_duplicates": False}  # splits before f12b1e2 cut message by message

    def __init__(
        self,
        path: str | None = None,
        *,
        hub: str | None = "ucirvine/sms_spam",
        builtin: bool = False,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        group_duplicates: bool = True,
        lowercase: bool = True,
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
        self.path = path
        self.hub = hub
        self.builtin = builtin
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.group_duplicates = group_duplicates
        self.labels: list[str] | None = None

    def _load_records(self) -> dict[str, datasets.Dataset]:
        ds = load_spam(
            self.path,
            self.hub,
            self.builtin,
            self.val_fraction,
            self.test_fraction,
            self.seed,
            self.group_duplicates,
        )
        return dict(ds)

    def _read_test_file(self, path: str | PathLike) -> datasets.Dataset:
        return read_spam_file(path, line=True)

    def _fit(self, records: dict[str, datasets.Dataset]) -> None:
        words = TOKENIZERS[self.tokenizer]  # the pipeline is made with the vocabulary
        self._fit_words([words(text) for text in records["train"]["text"]])
        self.labels = sorted({label for split in records.values() for label in split["label"]})
        folded = Counter(label.casefold() for label in self.labels)
        if any(n > 1 for n in folded.values()):
            twins = [label for label in self.labels if folded[label.casefold()] > 1]
            log.warning(
                "labels %s differ only in case and count as different classes; "
                "if they are one class, write them alike in the data",
                twins,
            )

    def _adopt(self, metadata: dict) -> None:
        self._adopt_words(metadata, specials=("pad", "unk"))  # an empty message is one <unk>
        self.labels = list(metadata["labels"])

    def metadata(self) -> dict:
        if self.vocab is None or self.labels is None:
            raise RuntimeError("metadata() needs setup() first")
        meta = {**self._words_metadata(), "labels": list(self.labels)}
        if "train" in self._records:  # for class weighting; not needed to use a checkpoint
            meta["class_counts"] = self.class_counts()
        return meta

    def class_counts(self) -> list[int]:
        """Examples per label in the train split, in `labels` order (for class weights)."""
        if "train" not in self._records or self.labels is None:
            raise RuntimeError("class_counts() needs setup('fit') first")
        counts = Counter(self._records["train"]["label"])
        return [counts[label] for label in self.labels]

    def _make_dataset(self, split: str, records: datasets.Dataset) -> datasets.Dataset:
        self._check_known(split, records, "label", self.labels, "label")
        label_ids = {label: i for i, label in enumerate(self.labels)}
        return self._encode(records, encode_labelled, pipeline=self.pipeline, label_ids=label_ids)

    def _collate_fn(self):
        return partial(collate_classification, pad_id=self.vocab.pad_id)
