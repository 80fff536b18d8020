"""Seeded train/validation/test index splits, plain and stratified by label."""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must each be in "
            f"[0, 1) and sum to less than 1"
        )


def _cut(indices: list[int], val_fraction: float, test_fraction: float) -> tuple[list, list, list]:
    n_val = round(len(indices) * val_fraction)
    n_test = round(len(indices) * test_fraction)
    return (
        indices[n_val + n_test :],
        indices[:n_val],
        indices[n_val : n_val + n_test],
    )


def random_split(
    n: int, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
) -> dict[str, list[int]]:
    """Shuffles ``range(n)`` with ``seed`` and cuts it into train/validation/test.

    Returns:
        ``{"train": [...], "validation": [...], "test": [...]}``, each sorted (file order).
    """
    _check_fractions(val_fraction, test_fraction)
    indices = list(range(n))
    random.Random(seed).shuffle(indices)
    train, val, test = _cut(indices, val_fraction, test_fraction)
    return {"train": sorted(train), "validation": sorted(val), "test": sorted(test)}


def stratified_split(
    labels: Sequence[Hashable],
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    groups: Sequence[Hashable] | None = None,
) -> dict[str, list[int]]:
    """Like `random_split`, but cuts each class separately so every split keeps the
    class ratios (13% spam stays 13% spam in a small validation set).

    Classes are visited in sorted order with one seeded generator, so the split depends
    only on the labels, ``groups`` and ``seed``.

    Args:
        groups: a key per example; examples with the same key land in the same split
            (a repeated message is never tested on its own copy in train). They must share
            a label. The fractions still count examples: a split takes whole groups until
            it holds its share. Without groups every example is its own group.
    """
    _check_fractions(val_fraction, test_fraction)
    if groups is None:
        groups = range(len(labels))
    elif len(groups) != len(labels):
        raise ValueError(f"{len(groups)} groups for {len(labels)} labels")
    members: dict[Hashable, list[int]] = {}  # group -> its examples, in first-seen order
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    by_class: dict[Hashable, list[list[int]]] = {}
    for group, indices in members.items():
        label = labels[indices[0]]
        other = next((labels[i] for i in indices if labels[i] != label), label)
        if other != label:
            raise ValueError(f"group {group!r} has examples labelled {label!r} and {other!r}")
        by_class.setdefault(label, []).append(indices)
    rng = random.Random(seed)
    out: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for label in sorted(by_class):
        class_groups = by_class[label]
        rng.shuffle(class_groups)
        n = sum(map(len, class_groups))
        wanted = {"validation": round(n * val_fraction), "test": round(n * test_fraction)}
        for indices in class_groups:  # validation fills first, then test, the rest trains
            split = next((s for s, k in wanted.items() if k > 0), "train")
            out[split] += indices
            if split != "train":
                wanted[split] -= len(indices)
    return {split: sorted(indices) for split, indices in out.items()}


def check_split_sizes(
    source: object, indices: dict[str, list[int]], val_fraction: float, test_fraction: float
) -> None:
    """Raises if a split that was given a share came out empty: `source` is too small."""
    shares = {"train": 1.0, "validation": val_fraction, "test": test_fraction}
    empty = [split for split, share in shares.items() if share > 0 and not indices[split]]
    if empty:
        total = sum(len(idx) for idx in indices.values())
        raise ValueError(
            f"{source}: {total} examples are too few to split (validation {val_fraction:.0%}, "
            f"test {test_fraction:.0%}): the {' and '.join(empty)} split would be empty"
        )
