"""Language-modelling data: running text cut into truncated-BPTT windows (B batch, T time).

After pytorch/examples word_language_model: each line's words plus ``<eos>`` are
concatenated into one token stream per split, cut into ``batch_size`` rows, and read in
consecutive windows of ``bptt`` steps, in order, so the model can carry its state across.
"""

from __future__ import annotations

from os import PathLike
from typing import get_args

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ..text import Vocab, split_words
from ..text.pipeline import TextPipeline
from .base import TextDataModule
from .readers import read_lines
from .sources import LMName, check_choice, load_lm_corpus
from .windows import BPTTWindows

EOS = "<eos>"
UNK = "<unk>"  # PTB's text already contains this literal; it maps to the same special


class LMDataModule(TextDataModule):
    """Word-level language modelling over PTB or WikiText-2 (see `load_lm_corpus`).

    Loader items: ``{"input": (B, T), "target": (B, T)}``, target = input shifted by one.
    Vocabulary specials are ``<unk>`` and ``<eos>``, no pad; metadata is ``{"vocab": ...}``.

    Args:
        name: ``"ptb"`` or ``"wikitext2"``.
        path: A folder with ``ptb.{train,valid,test}.txt`` or ``wiki.{train,valid,test}.tokens``.
        hub: Hub dataset id (default: none for PTB, ``Salesforce/wikitext`` for WikiText-2).
        hub_config: Hub config (default ``wikitext-2-v1`` for the default WikiText hub).
        lowercase: Lowercase the text (PTB is lowercase already).
        batch_size: Parallel rows of the training stream.
        eval_batch_size: Parallel rows of the validation/test streams.
        bptt: Window length (steps of truncated backpropagation through time).
        max_lines: Keep only the first N lines of each split (quick runs and tests).
        num_workers, min_freq, max_vocab_size, seed, test_file: See `TextDataModule`;
            ``seed`` is unused (windows are never shuffled), ``test_file`` is a text file.
    """

    fixed_settings = ("name", "max_lines", "lowercase")  # windows are never shuffled: no seed
    source_settings = ("hub", "hub_config")

    def __init__(
        self,
        name: LMName = "ptb",
        path: str | None = None,
        *,
        hub: str | None = None,
        hub_config: str | None = None,
        lowercase: bool = False,
        batch_size: int = 20,
        eval_batch_size: int | None = 10,
        bptt: int = 35,
        num_workers: int = 0,
        min_freq: int = 1,
        max_vocab_size: int | None = None,
        max_lines: int | None = None,
        seed: int = 0,
        test_file: str | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            min_freq=min_freq,
            max_vocab_size=max_vocab_size,
            seed=seed,
            test_file=test_file,
        )
        check_choice("name", name, get_args(LMName))
        if bptt < 1 or (max_lines is not None and max_lines < 1):
            raise ValueError(f"bptt and max_lines must be >= 1, got {bptt} and {max_lines}")
        self.name = name
        self.path = path
        self.hub = hub
        self.hub_config = hub_config
        self.lowercase = lowercase
        self.bptt = bptt
        self.max_lines = max_lines

    def _load_records(self) -> dict[str, list]:
        ds = load_lm_corpus(self.name, self.path, self.hub, self.hub_config)
        return {split: ds[split]["text"][: self.max_lines] for split in ds}

    def _read_test_file(self, path: str | PathLike) -> list:
        return read_lines(path)[: self.max_lines]

    def _words(self, line: str) -> list[str]:
        return [*split_words(line, self.lowercase), EOS]

    def _fit(self, records: dict[str, list]) -> None:
        self.vocab = Vocab.build(
            (self._words(line) for line in records["train"]),
            min_freq=self.min_freq,
            max_size=self.max_vocab_size,
            specials=(UNK, EOS),
            unk=UNK,
            pad=None,
        )
        self.pipeline = TextPipeline("whitespace", self.vocab, lowercase=self.lowercase)

    def _adopt(self, metadata: dict) -> None:
        self.vocab = Vocab.from_dict(metadata["vocab"])
        self.pipeline = TextPipeline("whitespace", self.vocab, lowercase=self.lowercase)

    def metadata(self) -> dict:
        if self.vocab is None:
            raise RuntimeError("metadata() needs setup() first")
        return {"vocab": self.vocab.to_dict()}

    def _make_dataset(self, split: str, records: list) -> Tensor:
        ids = [i for line in records for i in self.pipeline.ids(self._words(line))]
        return torch.tensor(ids, dtype=torch.long)  # (N_total,)

    def tokens(self, split: str) -> Tensor:
        """The whole 1-D token stream of ``split`` (``<eos>`` after every line)."""
        return self._dataset(split)

    def _examples_per_batch(self) -> int:
        return 1  # a dataset item is a whole window of B rows

    def _loader(self, split: str, whole: bool = False) -> DataLoader:
        batch_size = self.batch_size if split == "train" else self.eval_batch_size
        stream = self.tokens(split)
        if stream.numel() < 2 * batch_size:  # each of the B rows needs an input and a target
            setting = "data.batch_size" if split == "train" else "data.eval_batch_size"
            source = self.test_file if split == "test" and self.test_file else f"the {split} split"
            raise ValueError(
                f"{source} has {stream.numel()} tokens, too few for {setting}={batch_size}: "
                f"the text is cut into {batch_size} rows of at least 2 tokens; lower {setting}"
            )
        try:  # under data-parallel training, this process's rows of every window
            part = (0, 1) if whole else self.process_part()
            windows = BPTTWindows(stream, batch_size, self.bptt, part)
        except ValueError as err:
            setting = "data.batch_size" if split == "train" else "data.eval_batch_size"
            raise ValueError(f"{setting}={batch_size}: {err}") from None
        # batch_size=None: each dataset item is already a whole batch; its length is known
        # to Lightning's progress bar, unlike an IterableDataset's. Windows are read in the
        # text's order (no generator); a resumed run starts at the window it had reached.
        return DataLoader(
            windows,
            batch_size=None,
            sampler=self._order(len(windows), None) if split == "train" else None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
