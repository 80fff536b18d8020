"""Data on Arrow: every local file becomes a cached, memory-mapped `datasets.Dataset`, read
again only when its content changes; encoding is a cached batched map; batches come from
the table; the LM stream is built without a Python list; `data.streaming=true` trains on
rows read from the file as it streams."""

import os
from collections import Counter
from pathlib import Path

import datasets
import pytest
import torch

from rnn_tasks.data import ClassificationDataModule, LMDataModule, TaggingDataModule, readers
from rnn_tasks.data.arrow import file_fingerprint, read_arrow
from rnn_tasks.data.lm import line_words, word_counts
from rnn_tasks.data.sources import LM_FEATURES
from rnn_tasks.data.stream import plan_stream
from rnn_tasks.data.windows import BPTTWindows
from rnn_tasks.text import Vocab

CONLLU = "1\t{w}\t_\t{t}\t_\t_\t0\troot\t_\t_\n\n"
LINES = ["the cat sat on the mat", "a dog ran", "", "the dog sat", "cats and dogs sat on mats"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """A cache of this test's own, so that what it finds there it wrote itself."""
    monkeypatch.setenv("RNN_TASKS_CACHE", str(tmp_path / "cache"))


def ptb_folder(folder: Path, train: list[str], repeat: int = 1) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "ptb.train.txt").write_text("\n".join(train * repeat) + "\n")
    (folder / "ptb.valid.txt").write_text("the cat ran\na dog sat on the mat\n")
    (folder / "ptb.test.txt").write_text("the mat sat\ncats ran\n")
    return folder


def count_lines_read(monkeypatch) -> list[int]:
    """How many lines the readers decode from now on (a one-element list)."""
    read = [0]
    numbered = readers._numbered_lines

    def counting(path):
        for item in numbered(path):
            read[0] += 1
            yield item

    monkeypatch.setattr(readers, "_numbered_lines", counting)
    return read


def test_a_second_run_reads_the_cached_table_not_the_file(tmp_path, monkeypatch):
    folder = ptb_folder(tmp_path / "ptb", LINES, repeat=20)
    first = LMDataModule(path=str(folder), batch_size=2, eval_batch_size=2)
    read = count_lines_read(monkeypatch)
    first.setup("fit")
    assert read[0] >= 20 * len(LINES)
    read[0] = 0
    again = LMDataModule(path=str(folder), batch_size=2, eval_batch_size=2)
    again.setup("fit")
    assert read[0] <= 3  # the first line of each split, to see that it has one
    assert torch.equal(again.tokens("train"), first.tokens("train"))
    assert again.vocab == first.vocab


def test_an_edited_file_is_read_again(tmp_path):
    path = tmp_path / "spam.tsv"
    path.write_text("ham\thello there\nspam\twin cash now\n")
    before = read_arrow(readers.iter_labelled_tsv, path, datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.Value("string")}
    ))  # fmt: skip
    path.write_text("ham\thello where\nspam\twin cash now\n")  # same size, other bytes
    after = read_arrow(readers.iter_labelled_tsv, path, before.features)
    assert before["text"][:] == ["hello there", "win cash now"]
    assert after["text"][:] == ["hello where", "win cash now"]
    assert before.cache_files and after.cache_files  # memory-mapped from the cache
    assert before.cache_files[0]["filename"] != after.cache_files[0]["filename"]


def test_the_fingerprint_covers_the_bytes_and_how_they_are_read(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"one line\n")
    b.write_bytes(b"one line\n")
    assert file_fingerprint(a, "x") == file_fingerprint(b, "x")  # content, not name
    assert file_fingerprint(a, "x") != file_fingerprint(a, "y")
    b.write_bytes(b"one line \n")
    assert file_fingerprint(a, "x") != file_fingerprint(b, "x")


def test_a_file_without_records_is_an_empty_typed_dataset(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n\n")
    ds = read_arrow(readers.iter_lines, path, LM_FEATURES)
    assert len(ds) == 0 and ds.features == LM_FEATURES


def test_a_malformed_line_is_still_reported_at_its_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("ham\tfine\nno tab here\n")
    with pytest.raises(readers.DataFormatError, match=r"bad\.tsv:2"):
        ClassificationDataModule(path=str(path)).setup()


def test_encoded_examples_and_batches_come_from_the_arrow_table(tmp_path):
    (tmp_path / "x-ud-train.conllu").write_text(
        "".join(CONLLU.format(w=w, t=t) for w, t in [("Dogs", "NOUN"), ("run", "VERB")] * 4)
    )
    (tmp_path / "x-ud-dev.conllu").write_text(CONLLU.format(w="Cats", t="NOUN"))
    dm = TaggingDataModule(path=str(tmp_path), batch_size=3)
    dm.setup("fit")
    encoded = dm._dataset("train")
    assert isinstance(encoded, datasets.Dataset) and encoded.cache_files
    assert encoded[0] == {
        "ids": [dm.vocab.index("Dogs")],
        "chars": [[dm.chars.index(c) for c in "Dogs"]],
        "tags": [dm.tags.index("NOUN")],
        "words": ["Dogs"],
    }
    batch = next(iter(dm.train_dataloader()))
    assert batch["tokens"].shape == (3, 1) and batch["chars"].shape[:2] == (3, 1)


def test_the_lm_stream_is_every_lines_ids_then_eos(tmp_path):
    folder = ptb_folder(tmp_path / "ptb", LINES)
    dm = LMDataModule(path=str(folder), batch_size=2, eval_batch_size=2, lowercase=True)
    dm.setup()
    expected = [
        dm.vocab.index(w) for line in LINES if line for w in line_words(line, lowercase=True)
    ]
    assert dm.tokens("train").dtype == torch.int32  # 4 bytes a token, not a list of ints
    assert dm.tokens("train").tolist() == expected
    window = BPTTWindows(dm.tokens("train"), 2, 3)[0]
    assert window["input"].dtype == torch.long


def test_word_counts_in_batches_build_the_vocabulary_of_the_word_lists():
    lines = datasets.Dataset.from_dict({"text": ["b a a", "c b <unk>", "a"] * 70_000})
    counts = word_counts(lines, lowercase=False)
    words = [line_words(line, False) for line in lines["text"]]
    assert counts == Counter(w for ws in words for w in ws)
    specials = ("<unk>", "<eos>")
    assert Vocab.from_counts(counts, specials=specials, pad=None) == Vocab.build(
        words, specials=specials, pad=None
    )


def test_encoding_is_cached_and_reused_while_the_vocabulary_is_the_same(tmp_path):
    folder = ptb_folder(tmp_path / "ptb", LINES)
    runs = [LMDataModule(path=str(folder), batch_size=2, eval_batch_size=2) for _ in range(2)]
    files = []
    for dm in runs:
        dm.setup("fit")
        files.append(sorted(os.listdir(tmp_path / "cache" / "datasets" / "generator")))
    assert files[0] == files[1]  # nothing new written the second time
    other = LMDataModule(path=str(folder), batch_size=2, eval_batch_size=2, max_vocab_size=4)
    other.setup("fit")
    assert other.tokens("train").max() < 4  # another vocabulary: encoded again


# --- data.streaming=true ---------------------------------------------------------------------


def test_streaming_reads_the_rows_plan_stream_cuts_with_the_same_vocabulary(tmp_path):
    folder = ptb_folder(tmp_path / "ptb", LINES, repeat=5)
    streamed = LMDataModule(path=str(folder), batch_size=3, bptt=4, streaming=True)
    streamed.setup("fit")
    in_memory = LMDataModule(path=str(folder), batch_size=3, bptt=4)
    in_memory.setup("fit")
    assert streamed.vocab == in_memory.vocab  # counted in the planning pass, the same
    plan = plan_stream(folder / "ptb.train.txt", 3, lambda line: line_words(line, False))
    text = (folder / "ptb.train.txt").read_bytes()
    rows = []
    for start, stop in zip(plan.row_offsets, plan.row_offsets[1:], strict=False):
        lines = text[start:stop].decode().splitlines()
        ids = [streamed.vocab.index(w) for line in lines if line for w in line_words(line, False)]
        rows.append(ids[: plan.row_length])
    reference = BPTTWindows(torch.tensor(rows).flatten(), 3, 4)
    windows = list(streamed.train_dataloader())
    assert len(windows) == len(reference)
    for k, window in enumerate(windows):
        assert torch.equal(window["input"], reference[k]["input"])
        assert torch.equal(window["target"], reference[k]["target"])
    with pytest.raises(RuntimeError, match="streaming"):
        streamed.tokens("train")


def test_a_resumed_streamed_epoch_starts_at_the_window_it_had_reached(tmp_path):
    folder = ptb_folder(tmp_path / "ptb", LINES, repeat=5)
    dm = LMDataModule(path=str(folder), batch_size=2, bptt=3, streaming=True)
    dm.setup("fit")
    whole = list(dm.train_dataloader())
    dm.train_order_state(0)
    resumed = LMDataModule(path=str(folder), batch_size=2, bptt=3, streaming=True)
    resumed.setup("fit")
    resumed.resume_train_order({"done": 4})
    rest = list(resumed.train_dataloader())
    assert len(rest) == len(whole) - 4
    assert all(torch.equal(a["input"], b["input"]) for a, b in zip(rest, whole[4:], strict=True))
    assert len(list(resumed.train_dataloader())) == len(whole)  # the next epoch is whole


def test_streaming_in_one_of_two_processes_reads_its_half_of_the_rows(tmp_path):
    folder = ptb_folder(tmp_path / "ptb", LINES, repeat=5)
    whole = LMDataModule(path=str(folder), batch_size=4, bptt=3, streaming=True)
    whole.setup("fit")
    expected = list(whole.train_dataloader())
    for rank in (0, 1):
        dm = LMDataModule(path=str(folder), batch_size=4, bptt=3, streaming=True)
        dm.process_part = lambda rank=rank: (rank, 2)
        dm.setup("fit")
        ours = list(dm.train_dataloader())
        assert len(ours) == len(expected)
        for a, b in zip(ours, expected, strict=True):
            assert torch.equal(a["input"], b["input"][2 * rank : 2 * rank + 2])


@pytest.mark.parametrize(
    ("settings", "message"),
    [({}, "data.path"), ({"path": ".", "max_lines": 3}, "max_lines")],
)
def test_streaming_refuses_what_it_cannot_do(settings, message):
    with pytest.raises(ValueError, match=message):
        LMDataModule(streaming=True, **settings)
