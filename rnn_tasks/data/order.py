"""The order a training loader reads its examples in, resumable mid-epoch.

A run killed in epoch e and resumed from its last checkpoint must read the rest of epoch e
in the same order, and every later epoch too, as the uninterrupted run would have. torch's
`RandomSampler` draws each epoch's permutation from a generator that a fresh loader starts
again from its seed, so a resumed run read epoch e in epoch 0's order. `TrainOrder` draws
the same permutations from the same generator (runs keep the order they always had) and can
be put back where a checkpoint left it: at an epoch's start, or some batches into it.
"""

from __future__ import annotations

from collections.abc import Iterator
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
