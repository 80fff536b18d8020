"""Language-modelling data: running text cut into truncated-BPTT windows (B batch, T time).

After pytorch/examples word_language_model: each line's words plus ``<eos>`` are
concatenated into one token stream per split, cut into ``batch_size`` rows, and read in
consecutive windows of ``bptt`` steps, in order, so the model can carry its state across.

The stream never exists as a Python list: lines are encoded in batches into an Arrow
column of id lists (cached), whose values, flattened, are the stream (int32, 4 bytes a
token); the vocabulary comes from word counts made batch by batch (cached too).
"""

from __future__ import annotations

import warnings
from collections import Counter
from functools import partial
from os import PathLike
from pathlib import Path
from typing import get_args

import datasets
import pyarrow.compute as pc
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ..text import Vocab, split_words
from ..text.pipeline import TextPipeline
from .arrow import quiet_datasets
from .base import TextDataModule
from .sources import LMName, check_choice, lm_files, load_lm_corpus, read_text_file
from .stream import StreamedWindows, StreamPlan, Words, cached_plan
from .windows import BPTTWindows

EOS = "<eos>"
UNK = "<unk>"  # PTB's text already contains this literal; it maps to the same special
COUNTS = datasets.Features({"word": datasets.Value("string"), "count": datasets.Value("int64")})
IDS = datasets.Features({"ids": datasets.List(datasets.Value("int32"))})


def line_words(line: str, lowercase: bool) -> list[str]:
    """A line's words and the ``<eos>`` that ends it: what the stream holds of a line."""
    return [*split_words(line, lowercase), EOS]


def count_batch(batch: dict, lowercase: bool) -> dict:
    """A batch of lines -> its words and how often each occurs (partial counts)."""
    counts = Counter(w for line in batch["text"] for w in line_words(line, lowercase))
    return {"word": list(counts), "count": list(counts.values())}


def encode_lines(batch: dict, pipeline: TextPipeline, lowercase: bool) -> dict:
    """A batch of lines -> each line's ids, ``<eos>`` last."""
    return {"ids": [pipeline.ids(line_words(line, lowercase)) for line in batch["text"]]}


def word_counts(lines: datasets.Dataset, lowercase: bool) -> Counter:
    """How often each word (and ``<eos>``) occurs in `lines`, counted in large batches
    whose partial counts are cached and summed by Arrow."""
    with quiet_datasets():
        counted = lines.map(
            count_batch,
            batched=True,
            batch_size=100_000,  # fewer, larger partial counts to sum
            remove_columns=lines.column_names,
            fn_kwargs={"lowercase": lowercase},
            features=COUNTS,
        )
    totals = counted.data.table.group_by("word").aggregate([("count", "sum")])
    words, counts = totals["word"].to_pylist(), totals["count_sum"].to_pylist()
    return Counter(dict(zip(words, counts, strict=True)))


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
        streaming: Read the training text from its file as it streams, never whole in
            memory (`stream.StreamedWindows`), for a corpus larger than memory; its rows
            are cut at line starts by bytes rather than by tokens. Needs ``path``;
            validation and test are read as usual.
        num_workers, num_proc, min_freq, max_vocab_size, seed, test_file: See `TextDataModule`;
            ``seed`` is unused (windows are never shuffled), ``test_file`` is a text file.
    """

    fixed_settings = ("name", "max_lines", "lowercase")  # windows are never shuffled: no seed
    source_settings = ("hub", "hub_config", "streaming")
    legacy_defaults = {"streaming": False}

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
        num_proc: int | None = None,
        min_freq: int = 1,
        max_vocab_size: int | None = None,
        max_lines: int | None = None,
        streaming: bool = False,
        seed: int = 0,
        test_file: str | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            num_proc=num_proc,
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
        self.streaming = streaming
        if streaming and path is None:
            raise ValueError(
                "data.streaming=true reads local files: set data.path=<a folder with "
                "ptb.{train,valid,test}.txt or wiki.{train,valid,test}.tokens>"
            )
        if streaming and max_lines is not None:
            raise ValueError("data.max_lines does not apply with data.streaming=true: drop one")
        self._plan: StreamPlan | None = None

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.streaming and stage in (None, "fit"):
            self._datasets["train"] = self._train_plan()

    def _train_file(self) -> Path:
        return lm_files(Path(self.path), self.name)["train"]

    def _line_words(self) -> Words:
        """`line_words` with this data's casing, as the streamed reader calls it."""
        return partial(line_words, lowercase=self.lowercase)

    def _train_plan(self) -> StreamPlan:
        """The training file's rows and word counts (streaming): one pass over it, or the
        plan an earlier run made of the same bytes."""
        if self._plan is None:
            how = ("line_words", EOS, self.lowercase)
            words = self._line_words()
            self._plan = cached_plan(self._train_file(), self.batch_size, words, how)
        return self._plan

    def _load_records(self) -> dict[str, datasets.Dataset]:
        if self.streaming:  # the training text is read as it streams, at its loader
            files = lm_files(Path(self.path), self.name)
            return {split: read_text_file(files[split]) for split in ("validation", "test")}
        ds = load_lm_corpus(self.name, self.path, self.hub, self.hub_config)
        return {split: self._first_lines(ds[split]) for split in ds}

    def _read_test_file(self, path: str | PathLike) -> datasets.Dataset:
        return self._first_lines(read_text_file(path))

    def _first_lines(self, lines: datasets.Dataset) -> datasets.Dataset:
        if self.max_lines is None or self.max_lines >= len(lines):
            return lines
        return lines.select(range(self.max_lines))

    def _fit(self, records: dict[str, datasets.Dataset]) -> None:
        counts = (
            self._train_plan().counts
            if self.streaming
            else word_counts(records["train"], self.lowercase)
        )
        self.vocab = Vocab.from_counts(
            counts,
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

    def _make_dataset(self, split: str, records: datasets.Dataset) -> Tensor:
        encoded = self._encode(
            records, encode_lines, IDS, pipeline=self.pipeline, lowercase=self.lowercase
        )
        if not len(encoded):
            return torch.zeros(0, dtype=torch.int32)
        ids = pc.list_flatten(encoded.data.table.column("ids")).to_numpy()  # (N_total,) int32
        with warnings.catch_warnings():
            # One chunk comes zero-copy from the memory-mapped cache, read-only; the
            # stream is only ever read (windows copy what they take), so no copy is made.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(ids)

    def tokens(self, split: str) -> Tensor:
        """The whole 1-D token stream of ``split`` (``<eos>`` after every line), int32."""
        if self.streaming and split == "train":
            raise RuntimeError("with data.streaming=true the training text is read from its file")
        return self._dataset(split)

    def _examples_per_batch(self) -> int:
        return 1  # a dataset item is a whole window of B rows

    def _loader(self, split: str, whole: bool = False) -> DataLoader:
        if self.streaming and split == "train":
            return self._streamed_loader(whole)
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

    def _streamed_loader(self, whole: bool) -> DataLoader:
        part = (0, 1) if whole else self.process_part()
        try:
            windows = StreamedWindows(
                self._train_file(),
                self._train_plan(),
                self._line_words(),
                self.pipeline.ids,
                self.bptt,
                part,
            )
        except ValueError as err:
            raise ValueError(f"data.batch_size={self.batch_size}: {err}") from None
        # The order only keeps count, for a checkpoint; a resumed run starts reading its
        # rows at the window it had reached.
        windows.start_at(self._order(len(windows), None).resume_point())
        return DataLoader(
            windows,
            batch_size=None,
            num_workers=min(self.num_workers, 1),  # one reader: a second would repeat it
            persistent_workers=self.num_workers > 0,
        )
