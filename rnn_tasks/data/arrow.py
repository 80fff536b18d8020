"""Local data files as Arrow datasets, cached on disk by their content.

A reader's records go through `datasets.Dataset.from_generator` once; the table is written
to the cache under a fingerprint of the file's bytes and of how it was read, so the next
run memory-maps it instead of parsing the file again, and an edited file is read anew.
The readers stay the parsers (`readers.py`): a malformed line is still reported with its
file and line number, on the first read of that content.

Every later step (`Dataset.map`) is cached by `datasets` under a fingerprint of its input
and its function, so a run whose vocabulary and settings are unchanged starts from
memory-mapped ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from os import PathLike
from pathlib import Path

import datasets
import xxhash

from ..files import cache_root

# Part of every fingerprint: raise it when a reader's records change for the same bytes,
# so that caches written by the older reader are not read as the newer one's.
READERS_VERSION = 1


def cache_dir() -> Path:
    """Where Arrow copies of data files go (`RNN_TASKS_CACHE`/datasets)."""
    return cache_root() / "datasets"


def file_fingerprint(path: str | PathLike, *how: object) -> str:
    """A hash of the file's bytes and of `how` it is read (reader, columns, options)."""
    digest = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    digest.update(repr((READERS_VERSION, *how)).encode())
    return digest.hexdigest()


@contextmanager
def quiet_datasets() -> Iterator[None]:
    """`datasets` without its progress bars (a cached read prints three otherwise)."""
    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def _rows(read: Callable, path: str, columns: tuple[str, ...], options: dict) -> Iterator[dict]:
    for record in read(path, **options):
        yield {column: record[column] for column in columns}


def read_arrow(
    read: Callable[..., Iterator[dict]],
    path: str | PathLike,
    features: datasets.Features,
    **options: object,
) -> datasets.Dataset:
    """The records `read(path, **options)` yields, as a cached Arrow dataset with `features`.

    Args:
        read: A generator of dict records (e.g. `readers.iter_conllu`); it runs only when no
            cache of this file's content, read this way, exists.
        path: The file.
        features: The columns to keep and their types.
        options: Keyword arguments of `read`, part of the fingerprint.
    """
    path = Path(path)
    columns = list(features)
    fingerprint = file_fingerprint(path, read.__module__, read.__qualname__, columns, options)
    # No list among these: `datasets` would read each element as a shard of its own.
    gen_kwargs = {"read": read, "path": str(path), "columns": tuple(columns), "options": options}
    if next(_rows(**gen_kwargs), None) is None:  # `datasets` refuses to build no rows
        return datasets.Dataset.from_dict({c: [] for c in columns}, features=features)
    try:
        with quiet_datasets():
            return datasets.Dataset.from_generator(
                _rows,
                features=features,
                gen_kwargs=gen_kwargs,
                cache_dir=str(cache_dir()),
                fingerprint=fingerprint,
            )
    except datasets.exceptions.DatasetGenerationError as err:
        # The reader's own error (file and line), not `datasets`' wrapper around it; the
        # unfinished table is left in a temporary folder, never in the cache.
        if err.__cause__ is None:
            raise
        raise err.__cause__ from None
