"""Prediction over files (`rnn_tasks.predict_files`): each format in and out, streamed."""

import json

import pytest
import torch

import rnn_tasks.predict_files as pf
from rnn_tasks.data import ClassificationDataModule, LMDataModule, TaggingDataModule
from rnn_tasks.data.sources import BUILTIN_DIR
from rnn_tasks.tasks import ClassificationTask, LanguageModelTask, TaggingTask

MODEL = dict(cell="gru", embedding_dim=12, hidden_size=10, bidirectional=True,
             char_embedding_dim=6, char_hidden_size=5)  # fmt: skip


def built(datamodule, task_class, **kwargs):
    torch.manual_seed(0)
    datamodule.setup("fit")
    return task_class(**datamodule.metadata(), **kwargs).eval()


@pytest.fixture(scope="module")
def pos():
    return built(TaggingDataModule(builtin=True), TaggingTask, model=MODEL)


@pytest.fixture(scope="module")
def cls():
    return built(ClassificationDataModule(builtin=True), ClassificationTask, model=MODEL)


@pytest.fixture(scope="module")
def lm():
    model = dict(cell="lstm", embedding_dim=12, hidden_size=10)
    return built(LMDataModule(max_lines=200, batch_size=4), LanguageModelTask, model=model)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_conllu_file_comes_back_as_conllu_with_upos_filled(pos, tmp_path):
    source = BUILTIN_DIR / "pos_demo.conllu"
    out = tmp_path / "tagged.conllu"
    n = pf.predict_file(pos.predictor, "pos", str(source), str(out), progress=False)
    given, written = source.read_text().rstrip().split("\n"), out.read_text().rstrip().split("\n")
    sentences = [s["words"] for s in pf.read_conllu(open(source), "x")]
    assert n == len(sentences)
    expected = iter(t for sentence in pos.predict(sentences) for _, t in sentence)
    assert len(given) == len(written)
    for a, b in zip(given, written, strict=True):
        if a.startswith("#") or not a.strip():
            assert a == b
            continue
        ca, cb = a.split("\t"), b.split("\t")
        assert ca[:3] == cb[:3] and ca[4:] == cb[4:]  # every column but UPOS as read
        if ca[0].isdigit():
            assert cb[3] == next(expected)


def test_lines_in_give_the_same_tags_as_one_sentence_at_a_time(pos, tmp_path):
    source = tmp_path / "in.txt"
    texts = ["I like green tea .", "", "Where is the U.S. embassy ?", "ok"]
    source.write_text("\n".join(texts) + "\n")
    out = tmp_path / "out.jsonl"
    pf.predict_file(pos.predictor, "pos", str(source), str(out), probs=True, progress=False)
    rows = read_jsonl(out)
    assert len(rows) == len(texts)
    for text, row in zip(texts, rows, strict=True):
        alone = pos.predict(text)
        assert row["text"] == text
        assert row["words"] == [w for w, _ in alone] and row["tags"] == [t for _, t in alone]
        assert all(max(p, key=p.get) == t for p, t in zip(row["probs"], row["tags"], strict=True))


def test_a_labelled_tsv_keeps_the_gold_label_beside_the_prediction(cls, tmp_path):
    source = BUILTIN_DIR / "spam_demo.tsv"
    out = tmp_path / "out.jsonl"
    pf.predict_file(cls.predictor, "cls", str(source), str(out), progress=False)
    rows = read_jsonl(out)
    lines = [line.split("\t", 1) for line in source.read_text().splitlines() if line.strip()]
    assert [r["gold"] for r in rows] == [label for label, _ in lines]
    assert [r["label"] for r in rows] == [cls.predict(text)[0] for _, text in lines]
    assert all(abs(sum(r["probs"].values()) - 1) < 1e-5 for r in rows)


def test_lm_lines_are_scored_as_the_task_scores_them(lm, tmp_path):
    source = tmp_path / "in.txt"
    texts = ["the company said", "it is not", "xyzzy"]
    source.write_text("\n".join(texts) + "\n")
    out = tmp_path / "out.jsonl"
    pf.predict_file(lm.predictor, "lm", str(source), str(out), progress=False)
    assert read_jsonl(out) == [
        {"text": t, **s} for t, s in zip(texts, lm.score(texts), strict=True)
    ]


def test_a_large_file_streams_in_bounded_chunks(cls, tmp_path, monkeypatch):
    monkeypatch.setattr(pf, "CHUNK", 50)
    seen = []

    class Recording:
        def predict_proba(self, texts):
            seen.append(len(texts))
            return [{"ham": 0.9, "spam": 0.1}] * len(texts)

    source = tmp_path / "big.txt"
    source.write_text("hello there\n" * 1234)
    out = tmp_path / "out.jsonl"
    assert pf.predict_file(Recording(), "cls", str(source), str(out), progress=False) == 1234
    assert max(seen) == 50 and sum(seen) == 1234
    assert len(out.read_text().splitlines()) == 1234


@pytest.mark.parametrize(
    "fmt, task, content, match",
    [
        ("conllu", "pos", "1\tI\tI\n", r"x.conllu:1: a CoNLL-U word line has 10"),
        ("tsv", "cls", "ham\tok\nno tab here\n", r"x.tsv:2: expected `label<TAB>text`"),
        ("conllu", "cls", "", r"format=conllu does not fit a 'cls' model"),
    ],
)
def test_a_malformed_file_names_its_line(fmt, task, content, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = f"x.{fmt}"
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=match):
        pf.predict_file(None, task, name, str(tmp_path / "out"), fmt=fmt, progress=False)


def test_the_output_may_not_be_the_input(cls, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("hello\n")
    with pytest.raises(ValueError, match="is the input file"):
        pf.predict_file(cls.predictor, "cls", str(source), str(source), progress=False)
    assert source.read_text() == "hello\n"


def test_a_predictor_refuses_a_bare_string(cls):
    with pytest.raises(TypeError, match="give a list of texts"):
        cls.predictor.predict_proba("hello there")
