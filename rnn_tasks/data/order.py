"""The order a training loader reads its examples in, resumable mid-epoch.

A run killed in epoch e and resumed from its last checkpoint must read the rest of epoch e
in the same order, and every later epoch too, as the uninterrupted run would have. torch's
`RandomSampler` draws each epoch's permutation from a generator that a fresh loader starts
again from its seed, so a resumed run read epoch e in epoch 0's order. `TrainOrder` draws
the same permutations from the same generator (runs keep the order they always had) and can
be put back where a checkpoint left it: at an epoch's start, or some batches into it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

import torch
from torch.utils.data import RandomSampler, Sampler


class TrainOrder(Sampler[int]):
    """Indices `0 .. size - 1`: shuffled as `RandomSampler(generator=generator)` shuffles
    them, or in order without a generator (LM windows, whose order is the text's).

    `state(done)` says where the order stands after `done` examples of the current epoch;
    `resume(state)` on a new `TrainOrder` continues from there.
    """

    def __init__(self, size: int, generator: torch.Generator | None = None) -> None:
        self.size = size
        self.generator = generator
        self._epoch_start: torch.Tensor | None = None  # the generator before this epoch's draws
        self._skip = 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        if self.generator is None:
            return iter(range(skip, self.size))
        if skip:  # mid-epoch: draw this epoch's permutation again, from its start
            self.generator.set_state(self._epoch_start)
        self._epoch_start = self.generator.get_state()
        return islice(iter(RandomSampler(range(self.size), generator=self.generator)), skip, None)

    def resume_point(self) -> int:
        """Where the next epoch starts, for a reader that is not driven by this order (a
        stream); the epochs after it start at 0."""
        skip, self._skip = self._skip, 0
        return skip

    def state(self, done: int) -> dict:
        """Where the order stands once `done` examples of this epoch were trained on
        (0 after a whole epoch: the next one starts from the generator as it is now)."""
        if self.generator is None:
            return {"done": done}
        generator = self._epoch_start if done else self.generator.get_state()
        return {"done": done, "generator": generator}

    def resume(self, state: dict) -> None:
        """Continue from `state`; call before the loader's first iteration."""
        self._skip = state["done"]
        if self.generator is None:
            return
        if self._skip:
            self._epoch_start = state["generator"]  # set when the epoch is drawn again
        else:
            self.generator.set_state(state["generator"])


class ProcessBatches(Sampler[list[int]]):
    """This process's part of every batch, under data-parallel training (DDP).

    The `order`'s indices are cut into batches of `batch_size` (B) as on one process, and
    each batch into `world` contiguous parts: process `rank` trains on its part, so the
    processes together train on exactly the batches one process would, each example
    once. A last batch of n < B examples is divided as evenly as it goes; one of fewer
    than `world` examples cannot give every process one, and is left out of the epoch.
    """

    def __init__(self, order: Iterable[int], batch_size: int, rank: int, world: int) -> None:
        if batch_size % world:
            raise ValueError(
                f"a batch of {batch_size} cannot be divided among {world} processes: "
                f"make the batch size a multiple of {world}"
            )
        self.order, self.batch_size, self.rank, self.world = order, batch_size, rank, world

    def __len__(self) -> int:
        full, rest = divmod(len(self.order), self.batch_size)
        return full + (rest >= self.world)

    def __iter__(self) -> Iterator[list[int]]:
        batch: list[int] = []
        for index in self.order:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield self._part(batch)
                batch = []
        if len(batch) >= self.world:
            yield self._part(batch)

    def _part(self, batch: list[int]) -> list[int]:
        n = len(batch)
        return batch[self.rank * n // self.world : (self.rank + 1) * n // self.world]
