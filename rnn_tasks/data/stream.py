"""Truncated-BPTT windows read from a text file as it streams, for corpora larger than memory.

`data.streaming=true` trains the language model on a file that neither its text nor its token
list has to fit in memory. One sequential pass (`plan_stream`) counts the words and each row's
tokens; `StreamedWindows` then reads the B rows side by side and yields the same windows
`BPTTWindows` builds from a batchified stream, holding only a window's tokens per row.

The one difference from the in-memory path: rows are cut at byte offsets, on line starts
(row ``b`` is the lines that start in bytes ``[b*S//B, (b+1)*S//B)``) rather than at every
N-th token, so row lengths differ from the in-memory token cut; all rows are then cut to the
shortest, N. The windows over the ``(B, N)`` rows are otherwise the same construction.

Why a torch `IterableDataset` with one file reader per row rather than Hugging Face's
`IterableDataset`: HF streams shards one after another, while truncated BPTT needs the B
rows read side by side, each row one contiguous stretch of text whose RNN state carries
across windows. A row is a seek to its first line and sequential reads from there.

Shapes: B batch rows (B/W of them in one of W processes), N steps per row, T window length
(``bptt``), S file size in bytes.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import pairwise
from os import PathLike
from pathlib import Path
from typing import BinaryIO

import torch
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

from .arrow import cache_dir, file_fingerprint
from .readers import _check_file, not_utf8

Words = Callable[[str], list[str]]  # a stripped line -> its words, end-of-line token included
Encode = Callable[[list[str]], list[int]]  # words -> one id per word

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamPlan:
    """What one pass over a corpus file tells: where its rows lie, their lengths, its words.

    Attributes:
        size: The file's size S in bytes.
        modified_ns: Its modification time; a file of another size or time has changed since.
        batch_size: The number of rows B.
        row_tokens: Tokens in each of the B rows, before the rows are cut to the shortest.
        counts: How often each word occurs in the whole file (to build the vocabulary from).
        row_offsets: B + 1 byte offsets: row ``b`` is the lines in bytes
            ``[row_offsets[b], row_offsets[b + 1])``; the first is 0 and the last is S.
    """

    size: int
    modified_ns: int
    batch_size: int
    row_tokens: list[int]
    counts: Counter[str]
    row_offsets: list[int]

    @property
    def row_length(self) -> int:
        """N, the tokens every row is cut to: the shortest row's."""
        return min(self.row_tokens)


def _text(raw: bytes, offset: int) -> str:
    """A raw line decoded and stripped, as `readers.read_lines` reads it.

    The byte-order mark is dropped only at offset 0, where a Windows editor writes it.
    """
    return raw.decode("utf-8-sig" if offset == 0 else "utf-8").strip()


def plan_stream(path: str | PathLike, batch_size: int, words: Words) -> StreamPlan:
    """Reads a corpus once, in order, to find its B rows' extents and lengths and its words.

    Args:
        path: A UTF-8 text file, one text line per line (like PTB's ``ptb.train.txt``).
        batch_size: The number of rows B the file is cut into.
        words: A stripped, non-empty line's words, end-of-line token included.

    Raises:
        FileNotFoundError: If there is no file at ``path``.
        DataFormatError: On a line that is not UTF-8.
        ValueError: If the shortest row has fewer than 2 tokens.
    """
    path = _check_file(path, "text corpus file")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    stat = path.stat()
    size = stat.st_size
    bounds = [b * size // batch_size for b in range(batch_size)]  # where each row's bytes begin
    row_offsets = [size] * (batch_size + 1)  # a row no line starts in stays empty
    row_tokens = [0] * batch_size
    counts: Counter[str] = Counter()
    row = -1  # the row of the line being read
    offset = 0  # the line's first byte
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            # A line belongs to the row its first byte lies in, whichever row it ends in.
            while row + 1 < batch_size and offset >= bounds[row + 1]:
                row += 1
                row_offsets[row] = offset
            try:
                line = _text(raw, offset)
            except UnicodeDecodeError as err:
                raise not_utf8(path, lineno, raw, err) from None
            offset += len(raw)
            if line:
                line_words = words(line)
                row_tokens[row] += len(line_words)
                counts.update(line_words)
    plan = StreamPlan(size, stat.st_mtime_ns, batch_size, row_tokens, counts, row_offsets)
    if plan.row_length < 2:
        raise ValueError(
            f"{path} is too short for batch_size={batch_size}: cut at line starts into "
            f"{batch_size} rows of about {size // batch_size} bytes, its shortest row holds "
            f"{plan.row_length} tokens, and each row needs at least 2 (an input and its "
            f"target): lower the batch size"
        )
    return plan


def cached_plan(path: str | PathLike, batch_size: int, words: Words, how: object) -> StreamPlan:
    """`plan_stream`, kept in the cache under a hash of the file's bytes, the batch size and
    `how` the words are read (e.g. ``("line_words", lowercase)``: `words` itself cannot be
    hashed), so a later run over the same text hashes the file instead of counting it.

    Raises what `plan_stream` raises; a cache that cannot be written only costs the pass.
    """
    path = _check_file(path, "text corpus file")
    fingerprint = file_fingerprint(path, "plan_stream", batch_size, how)
    cache = cache_dir() / "streams" / f"{fingerprint}.json"
    try:
        saved = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = None
    if saved is not None:
        stat = path.stat()  # the same bytes, maybe another copy: this file's size and time
        return StreamPlan(
            stat.st_size,
            stat.st_mtime_ns,
            saved["batch_size"],
            saved["row_tokens"],
            Counter(saved["counts"]),
            saved["row_offsets"],
        )
    plan = plan_stream(path, batch_size, words)
    saved = {key: getattr(plan, key) for key in ("batch_size", "row_tokens", "row_offsets")}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps({**saved, "counts": plan.counts}), encoding="utf-8")
        partial.replace(cache)  # whole or not at all, whichever process writes last
    except OSError as err:
        log.warning("could not keep the stream's plan in %s: %s", cache.parent, err)
    return plan


class _Row:
    """One row being read: a file handle at its next line, and the tokens read but not used.

    Tokens are counted by row position: ``buf[0]`` is the row's token ``base``.
    """

    def __init__(self, f: BinaryIO, start: int, stop: int, words: Words, encode: Encode) -> None:
        f.seek(start)
        self.f, self.offset, self.stop = f, start, stop
        self.words, self.encode = words, encode
        self.buf: list[int] = []
        self.base = 0

    def _next_words(self) -> list[str]:
        while self.offset < self.stop:
            raw = self.f.readline()
            if not raw:
                break
            line = _text(raw, self.offset)  # plan_stream found every line UTF-8
            self.offset += len(raw)
            if line:
                return self.words(line)
        raise ValueError(
            f"{self.f.name}: a row ended before its planned tokens at byte {self.offset}; "
            f"has the file changed since plan_stream read it?"
        )

    def _encode(self, words: list[str]) -> list[int]:
        ids = self.encode(words)
        if len(ids) != len(words):  # a dropped word would shift the rest of the row
            raise ValueError(f"encode gave {len(ids)} ids for {len(words)} words: {words!r}")
        return list(ids)

    def read(self, start: int, stop: int) -> list[int]:
        """The row's tokens ``[start, stop)``; tokens before ``start`` are dropped for good."""
        end = self.base + len(self.buf)  # row position after the buffered tokens
        if start >= end:  # skip (resume) whole lines before start without encoding them
            while True:
                line_words = self._next_words()
                if end + len(line_words) > start:
                    break
                end += len(line_words)
            self.buf, self.base = self._encode(line_words), end
        del self.buf[: start - self.base]
        self.base = start
        while self.base + len(self.buf) < stop:
            self.buf += self._encode(self._next_words())
        return self.buf[: stop - start]


class StreamedWindows(IterableDataset):
    """`BPTTWindows` over a planned corpus file, read as it streams: one whole batch per item.

    Yields ``{"input": (B/W, T), "target": (B/W, T)}`` (``torch.long``) for windows
    ``k = 0 .. len - 1``: window ``k`` is columns ``[k*T, stop)`` of the ``(B/W, N)`` rows
    and the target the same shifted by one, ``stop = min(k*T + T, N - 1)``; the last window
    may be shorter. Each row is read by its own file handle, opened per iteration, so the
    object holds no open file and pickles into a `DataLoader` worker; ``words`` and
    ``encode`` must then be picklable too (module-level functions, not lambdas).
    Use with ``DataLoader(windows, batch_size=None)`` and at most one worker: the rows are
    read in order, so a second worker would only repeat the first one's windows.

    Args:
        path: The file `plan_stream` read.
        plan: Its plan.
        words: The ``words`` given to `plan_stream`.
        encode: Words to ids, one id per word.
        bptt: The window length T.
        part: ``(rank, world)``: under data-parallel training this process reads rows
            ``[rank * B / W, (rank + 1) * B / W)``. N is global, so every process gets the
            same number of windows.
    """

    def __init__(
        self,
        path: str | PathLike,
        plan: StreamPlan,
        words: Words,
        encode: Encode,
        bptt: int,
        part: tuple[int, int] = (0, 1),
    ) -> None:
        if bptt < 1:
            raise ValueError(f"bptt must be >= 1, got {bptt}")
        rank, world = part
        if plan.batch_size % world:
            raise ValueError(
                f"{plan.batch_size} rows cannot be divided among {world} processes: "
                f"make the batch size a multiple of {world}"
            )
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, {world}), got {rank}")
        rows = plan.batch_size // world
        self.path = Path(path)
        self.size, self.modified_ns = plan.size, plan.modified_ns
        self.row_length = plan.row_length  # N
        # Only this process's rows: B/W + 1 offsets, row r being [offsets[r], offsets[r + 1]).
        self.row_offsets = plan.row_offsets[rank * rows : (rank + 1) * rows + 1]
        self.words, self.encode = words, encode
        self.bptt = bptt
        self._first = 0  # the window the next iteration starts at (start_at)

    def __len__(self) -> int:
        return -(-(self.row_length - 1) // self.bptt)  # ceil((N - 1) / bptt)

    @property
    def num_predictions(self) -> int:
        """Number of predicted tokens over all windows: ``B/W * (N - 1)``."""
        return (len(self.row_offsets) - 1) * (self.row_length - 1)

    def start_at(self, k: int) -> None:
        """Makes the next iteration begin at window ``k`` (a mid-epoch resume); later ones at 0.

        The first ``k`` windows' lines are read and counted but neither encoded nor batched.
        With a `DataLoader` worker, the worker's copy is the one that forgets ``k``: call
        ``start_at(0)`` once the resumed epoch's iterator exists if the loader recreates
        its workers each epoch (``persistent_workers=False``).
        """
        if not 0 <= k <= len(self):
            raise ValueError(f"window {k} out of range for {len(self)} windows")
        self._first = k

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        # Not a generator function itself, so the resume point is taken (and forgotten) when
        # the iteration is created, not when its first window is asked for.
        first, self._first = self._first, 0
        info = get_worker_info()
        if info is not None and info.num_workers > 1:
            raise ValueError(
                f"StreamedWindows reads its rows in order: use a DataLoader with "
                f"num_workers <= 1, not {info.num_workers}"
            )
        stat = self.path.stat()
        if (stat.st_size, stat.st_mtime_ns) != (self.size, self.modified_ns):
            raise ValueError(
                f"{self.path} has changed since it was planned ({self.size} bytes, now "
                f"{stat.st_size}; modified since: {stat.st_mtime_ns != self.modified_ns}): "
                f"plan it again"
            )
        return self._windows(first)

    def _windows(self, first: int) -> Iterator[dict[str, Tensor]]:
        n = self.row_length
        with ExitStack() as files:  # closed at the end, or when the iterator is dropped
            rows = [
                _Row(files.enter_context(self.path.open("rb")), a, b, self.words, self.encode)
                for a, b in pairwise(self.row_offsets)
            ]
            for k in range(first, len(self)):
                start = k * self.bptt
                stop = min(start + self.bptt, n - 1)
                # T + 1 tokens per row: the target reaches one step past the input.
                data = torch.tensor([r.read(start, stop + 1) for r in rows], dtype=torch.long)
                yield {
                    "input": data[:, :-1].contiguous(),  # (B/W, T)
                    "target": data[:, 1:].contiguous(),  # (B/W, T)
                }
