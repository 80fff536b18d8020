"""Streamed truncated-BPTT windows: the same windows as `BPTTWindows` over rows cut by hand."""

import os
import pickle
import random
from collections import Counter

import pytest
import torch
from torch.testing import assert_close
from torch.utils.data import DataLoader

from rnn_tasks.data import stream
from rnn_tasks.data.errors import DataFormatError
from rnn_tasks.data.stream import StreamedWindows, cached_plan, plan_stream
from rnn_tasks.data.windows import BPTTWindows

# Module-level rather than lambdas: StreamedWindows pickles them into DataLoader workers.


def words(line):
    return [*line.split(), "<eos>"]


class Encode:
    """Words to ids from a dict; counts the words it encodes."""

    def __init__(self, vocab):
        self.vocab = vocab
        self.encoded = 0

    def __call__(self, ws):
        self.encoded += len(ws)
        return [self.vocab[w] for w in ws]


def corpus() -> str:
    """Lines of 0 to 14 words, some empty or blank, with multi-byte UTF-8 words."""
    rng = random.Random(0)
    pool = ["the", "cat", "sat", "on", "a", "mat", "naïve", "日本語", "N", "$", "<unk>", "x"]
    lines = []
    for i in range(40):
        if i % 7 == 3:
            lines.append("" if i % 2 else "   ")
        else:
            lines.append(" ".join(rng.choice(pool) for _ in range(rng.randint(1, 14))))
    return "\n".join(lines) + "\n"


def hand_rows(data: bytes, batch_size: int) -> list[list[str]]:
    """Each row's tokens: the lines whose first byte lies in [b*S//B, (b+1)*S//B)."""
    size = len(data)
    rows = [[] for _ in range(batch_size)]
    offset = 0
    for raw in data.split(b"\n"):
        line = raw.decode("utf-8").strip()
        if line:
            (b,) = [
                b
                for b in range(batch_size)
                if b * size // batch_size <= offset < (b + 1) * size // batch_size
            ]
            rows[b] += words(line)
        offset += len(raw) + 1
    return rows


def hand_windows(data: bytes, batch_size: int, bptt: int, vocab: dict) -> BPTTWindows:
    rows = hand_rows(data, batch_size)
    n = min(len(r) for r in rows)
    matrix = torch.tensor([[vocab[w] for w in r[:n]] for r in rows])  # (B, N)
    # batchify cuts the flattened matrix back into exactly its rows.
    return BPTTWindows(matrix.reshape(-1), batch_size, bptt)


def assert_same_windows(got, want):
    got = list(got)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert_close(g["input"], w["input"], rtol=0, atol=0)  # values, dtype, shape
        assert_close(g["target"], w["target"], rtol=0, atol=0)


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(corpus(), encoding="utf-8")
    vocab = {w: i for i, w in enumerate(sorted(set(corpus().split()) | {"<eos>"}))}
    return path, vocab


@pytest.mark.parametrize("batch_size", [1, 3, 4])
@pytest.mark.parametrize("bptt", [1, 5])
def test_windows_equal_bptt_windows_over_rows_cut_by_hand(text_file, batch_size, bptt):
    path, vocab = text_file
    want = hand_windows(path.read_bytes(), batch_size, bptt, vocab)
    plan = plan_stream(path, batch_size, words)
    got = StreamedWindows(path, plan, words, Encode(vocab), bptt)
    assert len(got) == len(want)
    assert got.num_predictions == want.num_predictions
    assert_same_windows(got, want)
    assert want[0]["input"].dtype == torch.long


def test_row_tokens_and_counts(tmp_path):
    path = tmp_path / "train.txt"
    data = corpus().encode()
    path.write_bytes(data)
    for batch_size in (1, 3, 4):
        plan = plan_stream(path, batch_size, words)
        assert plan.size == len(data)
        assert plan.batch_size == batch_size
        assert plan.row_tokens == [len(r) for r in hand_rows(data, batch_size)]
        lines = [ln.strip() for ln in corpus().splitlines()]
        assert plan.counts == Counter(w for ln in lines if ln for w in words(ln))

    # A byte-order mark is no part of the first word (as in readers.read_lines).
    path.write_bytes("\ufeffhello world\nbye now\n".encode())
    assert plan_stream(path, 1, words).counts == Counter(
        {"hello": 1, "world": 1, "bye": 1, "now": 1, "<eos>": 2}
    )


@pytest.mark.parametrize("batch_size", [2, 4])
def test_part_reads_its_rows(text_file, batch_size):
    path, vocab = text_file
    plan = plan_stream(path, batch_size, words)
    whole = list(StreamedWindows(path, plan, words, Encode(vocab), 5))
    half = batch_size // 2
    parts = [StreamedWindows(path, plan, words, Encode(vocab), 5, part=(r, 2)) for r in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == len(whole)
    for r, part in enumerate(parts):
        rows = slice(r * half, (r + 1) * half)
        want = [{key: w[key][rows] for key in ("input", "target")} for w in whole]
        assert_same_windows(part, want)
        assert part.num_predictions * 2 == plan.batch_size * (plan.row_length - 1)

    odd = plan_stream(path, 3, words)
    with pytest.raises(ValueError, match="multiple of 2"):
        StreamedWindows(path, odd, words, Encode(vocab), 5, part=(0, 2))


def test_start_at_resumes_once(text_file):
    path, vocab = text_file
    plan = plan_stream(path, 3, words)
    encode = Encode(vocab)
    windows = StreamedWindows(path, plan, words, encode, 1)
    full = list(windows)
    full_encoded, encode.encoded = encode.encoded, 0
    for k in (0, 1, len(full) - 1, len(full)):
        windows.start_at(k)
        assert_same_windows(windows, full[k:])
        assert_same_windows(windows, full)  # the next iteration is whole again
    encode.encoded = 0
    windows.start_at(len(full) - 1)
    list(windows)
    assert encode.encoded < full_encoded / 4  # skipped lines are counted, not encoded
    with pytest.raises(ValueError, match="out of range"):
        windows.start_at(len(full) + 1)


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"a b\nc d\ne \xff f\ng h\n")
    with pytest.raises(DataFormatError, match="not UTF-8") as err:
        plan_stream(bad, 1, words)
    assert err.value.line == 3
    assert str(err.value).startswith(f"{bad}:3:")

    short = tmp_path / "short.txt"
    short.write_text("a b c d e f\n", encoding="utf-8")
    plan_stream(short, 1, words)
    with pytest.raises(ValueError, match="short.txt.*batch_size=4.*lower the batch size"):
        plan_stream(short, 4, words)  # one line: three of the four rows are empty

    with pytest.raises(FileNotFoundError, match="no file at"):
        plan_stream(tmp_path / "missing.txt", 1, words)


def test_changed_file_refused(text_file):
    path, vocab = text_file
    windows = StreamedWindows(path, plan_stream(path, 2, words), words, Encode(vocab), 5)
    with path.open("a", encoding="utf-8") as f:
        f.write("more\n")
    with pytest.raises(ValueError, match="changed since it was planned"):
        iter(windows)
    # An edit that keeps the size: the same bytes count, another time.
    windows = StreamedWindows(path, plan_stream(path, 2, words), words, Encode(vocab), 5)
    text = path.read_bytes()
    path.write_bytes(text[::-1])
    planned = windows.modified_ns
    os.utime(path, ns=(planned, planned + 10**9))  # whatever the clock's resolution
    with pytest.raises(ValueError, match="changed since it was planned.*modified since: True"):
        iter(windows)


def test_pickles_and_runs_in_a_worker(text_file):
    path, vocab = text_file
    windows = StreamedWindows(path, plan_stream(path, 4, words), words, Encode(vocab), 5)
    full = list(windows)
    next(iter(windows))  # an iteration in progress holds its files, not the object
    assert_same_windows(pickle.loads(pickle.dumps(windows)), full)
    assert_same_windows(DataLoader(windows, batch_size=None, num_workers=1), full)
    with pytest.raises(ValueError, match="num_workers <= 1"):
        list(DataLoader(windows, batch_size=None, num_workers=2))


def test_a_cached_plan_is_the_plan_and_a_later_run_does_not_count_again(
    text_file, tmp_path, monkeypatch
):
    path, vocab = text_file
    monkeypatch.setenv("RNN_TASKS_CACHE", str(tmp_path / "cache"))
    planned = plan_stream(path, 3, words)
    assert cached_plan(path, 3, words, "split") == planned
    expected = list(StreamedWindows(path, planned, words, Encode(vocab), 5))

    def no_pass(*args):
        raise AssertionError("counted again")

    monkeypatch.setattr(stream, "plan_stream", no_pass)
    copy = tmp_path / "copy.txt"  # the same bytes elsewhere, written later
    copy.write_bytes(path.read_bytes())
    plan = cached_plan(copy, 3, words, "split")
    assert (plan.size, plan.modified_ns) == (copy.stat().st_size, copy.stat().st_mtime_ns)
    got = list(StreamedWindows(copy, plan, words, Encode(vocab), 5))
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a["input"], b["input"]) and torch.equal(a["target"], b["target"])
    # Another batch size, another way of reading the words, other bytes: counted anew.
    for args in ((copy, 2, words, "split"), (copy, 3, words, "lowercase")):
        with pytest.raises(AssertionError, match="counted again"):
            cached_plan(*args)
    copy.write_bytes(path.read_bytes() + b"one more line\n")
    with pytest.raises(AssertionError, match="counted again"):
        cached_plan(copy, 3, words, "split")
