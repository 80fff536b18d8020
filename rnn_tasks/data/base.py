"""What the three task DataModules share: split bookkeeping per stage, metadata adoption,
and the data loaders. Each task fills in how to load, read a test file, fit and encode.

Examples stay in Arrow tables (`datasets.Dataset`, memory-mapped from the cache) from the
file to the batch: encoding is a cached, batched `Dataset.map`, and a loader fetches each
batch's rows from the table in one read (`Dataset.__getitems__`)."""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter
from collections.abc import Callable
from os import PathLike

import datasets
import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from ..text import Vocab
from ..text.pipeline import TextPipeline
from .arrow import quiet_datasets
from .errors import DataFormatError
from .order import ProcessBatches, TrainOrder
from .sources import SPLITS

# Splits each Lightning stage needs.
STAGE_SPLITS = {
    "fit": ("train", "validation"),
    "validate": ("validation",),
    "test": ("test",),
    "predict": ("test",),
}


def _positive(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


class TextDataModule(L.LightningDataModule):
    """Base class: records per split (Arrow datasets) -> metadata (vocab, ...) -> encoded
    datasets -> loaders.

    ``setup()`` loads the source once and builds the vocabulary from the train split,
    unless `adopt` gave one. With an adopted vocabulary and a ``test_file``, testing reads
    that file alone and never touches the source (an offline evaluation of a checkpoint).

    Args:
        batch_size: Training batch size.
        eval_batch_size: Validation/test batch size; defaults to ``batch_size``.
        num_workers: DataLoader worker processes.
        num_proc: Processes that encode the examples (`Dataset.map`); for large corpora.
        min_freq: Drop training tokens seen fewer times than this from the vocabulary.
        max_vocab_size: Largest vocabulary size, specials included.
        seed: Seed for the source's split and the training shuffle.
        test_file: A local file in the task's format that replaces the test split.
    """

    metadata_keys: tuple[str, ...] = ("vocab",)
    # Constructor arguments that decide which examples a split holds, and how words meet
    # the vocabulary. A run resumed from a checkpoint, or a checkpoint evaluated, must keep
    # the checkpoint's: another split would test on training examples, another lookup
    # would miss the vocabulary. Where the files are (`path`) may change.
    fixed_settings: tuple[str, ...] = ()
    # Which corpus: fixed for a resumed run, free for an evaluation (of other data).
    source_settings: tuple[str, ...] = ("hub", "hub_config", "builtin")
    # What a setting missing from an older checkpoint meant, where today's default differs.
    legacy_defaults: dict[str, object] = {}

    def __init__(
        self,
        *,
        batch_size: int,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        num_proc: int | None = None,
        min_freq: int = 1,
        max_vocab_size: int | None = None,
        seed: int = 0,
        test_file: str | PathLike | None = None,
    ) -> None:
        super().__init__()
        _positive(
            batch_size=batch_size, eval_batch_size=eval_batch_size, min_freq=min_freq,
            num_proc=num_proc,
        )  # fmt: skip
        self.batch_size = batch_size
        self.eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
        self.num_workers = num_workers
        self.num_proc = num_proc
        self.min_freq = min_freq
        self.max_vocab_size = max_vocab_size
        self.seed = seed
        self.test_file = test_file
        self.vocab: Vocab | None = None
        self.pipeline: TextPipeline | None = None  # text -> ids, made with the vocabulary
        self._records: dict[str, datasets.Dataset] = {}
        self._datasets: dict[str, datasets.Dataset | Tensor] = {}  # encoded, or an LM stream
        self._adopted = False
        self._train_order: TrainOrder | None = None
        self._train_order_to_resume: dict | None = None

    # --- what each task defines ------------------------------------------------------------

    @abstractmethod
    def _load_records(self) -> dict[str, datasets.Dataset]:
        """Raw records of every split of the source."""

    @abstractmethod
    def _read_test_file(self, path: str | PathLike) -> datasets.Dataset:
        """Raw records of a local test file, with the ``line`` each starts at if it can."""

    @abstractmethod
    def _fit(self, records: dict[str, datasets.Dataset]) -> None:
        """Builds vocab (from train) and the label inventory from the records."""

    @abstractmethod
    def _adopt(self, metadata: dict) -> None:
        """Takes vocab and label inventory from `metadata`."""

    @abstractmethod
    def metadata(self) -> dict:
        """What a task must know about the data, plain python types only."""

    @abstractmethod
    def _make_dataset(self, split: str, records: datasets.Dataset) -> datasets.Dataset | Tensor:
        """Encodes one split's records (examples a DataLoader can index), with `_encode`."""

    # --- shared ----------------------------------------------------------------------------

    def adopt(self, metadata: dict) -> None:
        """Uses a checkpoint's metadata (vocab, tags/labels) instead of building new ones.

        Call before `setup`; data with tags or labels outside the adopted ones is an error.
        """
        if self._datasets:
            raise RuntimeError("adopt() must be called before setup()")
        missing = [k for k in self.metadata_keys if k not in metadata]
        if missing:
            raise ValueError(
                f"metadata lacks {missing}: {type(self).__name__} needs keys "
                f"{list(self.metadata_keys)}, got {sorted(metadata)}"
            )
        self._adopt(metadata)
        self._adopted = True

    def setup(self, stage: str | None = None) -> None:
        needed = STAGE_SPLITS.get(stage, SPLITS)  # None (a manual setup()) -> all splits
        if all(split in self._datasets for split in needed):
            return
        offline_test = self._adopted and self.test_file is not None and set(needed) <= {"test"}
        if not offline_test and "train" not in self._records:
            self._records.update(self._load_records())
        if self.test_file is not None:
            self._records["test"] = self._read_test_file(self.test_file)
        if not self._adopted and self.vocab is None:
            self._fit(self._records)
        for split, records in self._records.items():
            if split not in self._datasets:
                self._datasets[split] = self._make_dataset(split, records)

    def _encode(
        self,
        records: datasets.Dataset,
        encode: Callable[..., dict],
        features: datasets.Features | None = None,
        **inputs: object,
    ) -> datasets.Dataset:
        """`records` encoded by `encode(batch, **inputs)`, a top-level function of a batch
        of records (a dict of columns) that returns the encoded columns (of `features`, if
        given; else as Arrow infers them).

        The result is cached beside the records under a fingerprint of the records, the
        function and `inputs` (the vocabulary among them), so a run like an earlier one
        memory-maps it instead of encoding again.
        """
        with quiet_datasets():
            return records.map(
                encode,
                batched=True,
                remove_columns=records.column_names,
                fn_kwargs=inputs,
                features=features,
                num_proc=self.num_proc if self.num_proc and len(records) > 1 else None,
            )

    def _check_known(
        self,
        split: str,
        records: datasets.Dataset,
        column: str,
        known: list[str],
        what: str,
    ) -> None:
        """Raises if a record's `column` (a tag list, a label) has a `what` outside `known`,
        the model's inventory.

        In a ``test_file`` it names the file and the line where the first such record
        (a message, or a sentence's first word) starts.
        """
        known_set = set(known)
        values = [v if isinstance(v, list) else [v] for v in records[column][:]]
        unknown = Counter(v for vs in values for v in vs if v not in known_set)
        if not unknown:
            return
        counts = dict(unknown.most_common())
        first = next(i for i, vs in enumerate(values) if any(v not in known_set for v in vs))
        if split == "test" and self.test_file is not None and "line" in records.column_names:
            bad = next(v for v in values[first] if v not in known_set)
            raise DataFormatError(
                self.test_file,
                records[first]["line"],
                f"{what} {bad!r} in the example from this line is not one of the model's "
                f"{what}s {known} (unknown {what}s in the file: {counts})",
            )
        raise ValueError(f"the {split} split has {what}s outside the {what} set {known}: {counts}")

    def _dataset(self, split: str) -> datasets.Dataset | Tensor:
        if split not in self._datasets:
            raise RuntimeError(f"no {split} split prepared: call setup() first")
        return self._datasets[split]

    def _order(self, size: int, generator: torch.Generator | None) -> TrainOrder:
        """The training loader's order, where a resumed run left it (`resume_train_order`)."""
        self._train_order = TrainOrder(size, generator)
        if self._train_order_to_resume is not None:
            self._train_order.resume(self._train_order_to_resume)
            self._train_order_to_resume = None
        return self._train_order

    def train_order_state(self, batches_done: int) -> dict:
        """Where the training order stands after `batches_done` batches of this epoch (0
        at an epoch's end), for a checkpoint: see `resume_train_order`."""
        if self._train_order is None:
            raise RuntimeError("no training loader made yet")
        return self._train_order.state(batches_done * self._examples_per_batch())

    def resume_train_order(self, state: dict) -> None:
        """The next training loader continues the order `train_order_state` saved."""
        self._train_order_to_resume = state

    def _examples_per_batch(self) -> int:
        return self.batch_size

    def process_part(self) -> tuple[int, int]:
        """(this process's rank, the number of processes) of the trainer running this data
        module: (0, 1) outside a trainer and on one process."""
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def whole_split_loader(self, split: str) -> DataLoader:
        """`split`'s loader over all of it, even in one process of several (DDP), which is
        otherwise given its share: for what one process computes alone (the figures)."""
        return self._loader(split, whole=True)

    def _loader(self, split: str, whole: bool = False) -> DataLoader:
        train = split == "train"
        dataset = self._dataset(split)
        generator = torch.Generator().manual_seed(self.seed) if train else None
        batch_size = self.batch_size if train else self.eval_batch_size
        sampler = self._order(len(dataset), generator) if train else None
        batching: dict = {"batch_size": batch_size, "sampler": sampler}
        rank, world = (0, 1) if whole else self.process_part()
        if world > 1 and train:  # this process's part of each batch one process would train
            batching = {"batch_sampler": ProcessBatches(sampler, batch_size, rank, world)}
        elif world > 1:  # evaluation: a contiguous share of the split, each example once
            share = range(rank * len(dataset) // world, (rank + 1) * len(dataset) // world)
            dataset = Subset(dataset, share)
        return DataLoader(
            dataset,
            **batching,
            generator=generator,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=self._collate_fn(),
        )

    def _collate_fn(self) -> Callable[[list], dict] | None:
        """A picklable batch builder (not a bound method: workers would copy the module)."""
        return None

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
