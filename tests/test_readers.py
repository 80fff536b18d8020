"""Local file parsers: CoNLL-U, labelled TSV, text lines."""

import pickle

import pytest
from conftest import DATA

from rnn_tasks.data.errors import DataFormatError
from rnn_tasks.data.readers import read_conllu, read_labelled_tsv, read_lines


def row(i, form, upos="NOUN", xpos="NN"):
    return "\t".join([str(i), form, form.lower(), upos, xpos, "_", "0", "root", "_", "_"])


CONLLU = "\n".join(
    [
        "# newdoc id = d1",
        "# sent_id = 1",
        "# text = I don't know",
        row(1, "I", "PRON", "PRP"),
        "2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_",
        row(2, "do", "AUX", "VBP"),
        row(3, "n't", "PART", "RB"),
        row(4, "know", "VERB", "VB"),
        "",
        "# sent_id = 2",
        row(1, "Sue", "PROPN", "NNP"),
        row(2, "likes", "VERB", "VBZ"),
        row(2.1, "likes", "VERB", "VBZ"),  # an empty node
        row(3, "tea"),
        # the last sentence has no trailing blank line
    ]
)


def test_read_conllu(tmp_path):
    f = tmp_path / "x.conllu"
    f.write_text(CONLLU, encoding="utf-8")
    sents = read_conllu(f)
    assert sents == [
        {
            "tokens": ["I", "do", "n't", "know"],
            "upos": ["PRON", "AUX", "PART", "VERB"],
            "xpos": ["PRP", "VBP", "RB", "VB"],
            "line": 4,  # of the first word
        },
        {
            "tokens": ["Sue", "likes", "tea"],
            "upos": ["PROPN", "VERB", "NOUN"],
            "xpos": ["NNP", "VBZ", "NN"],
            "line": 11,
        },
    ]


@pytest.mark.parametrize(
    ("bad_line", "match"),
    [
        ("3\tknow\tknow\tVERB\tVB\t_\t0\troot\t_", "expected 10 tab-separated .* found 9"),
        ("3 know know VERB VB _ 0 root _ _", "found 1"),
        ("x\tknow\tknow\tVERB\tVB\t_\t0\troot\t_\t_", "bad word ID 'x'"),
        (row(1, "again"), "out of sequence: expected 3.*blank line"),
    ],
)
def test_read_conllu_malformed_line_names_file_and_line(tmp_path, bad_line, match):
    f = tmp_path / "bad.conllu"
    f.write_text("\n".join(["# c", row(1, "a"), "", "# c2", row(1, "b"), row(2, "c"), bad_line]))
    with pytest.raises(DataFormatError, match=match) as info:
        read_conllu(f)
    assert str(info.value).startswith(f"{f}:7: ")
    assert info.value.line == 7 and "bad.conllu" in str(info.value)


def test_data_format_error_pickles():
    err = pickle.loads(pickle.dumps(DataFormatError("a.tsv", 3, "no tab")))
    assert str(err) == "a.tsv:3: no tab" and err.line == 3


def test_missing_file_names_path_and_kind(tmp_path):
    with pytest.raises(FileNotFoundError, match="CoNLL-U.*nope.conllu"):
        read_conllu(tmp_path / "nope.conllu")
    with pytest.raises(FileNotFoundError, match="label<TAB>text"):
        read_labelled_tsv(tmp_path / "nope.tsv")


def test_read_labelled_tsv(tmp_path):
    f = tmp_path / "sms.tsv"
    f.write_text("ham\tHi there\n\nspam\tWIN\tnow \r\n", encoding="utf-8")
    assert read_labelled_tsv(f) == [
        {"text": "Hi there", "label": "ham", "line": 1},
        {"text": "WIN\tnow", "label": "spam", "line": 3},  # only the first tab separates
    ]


def test_a_byte_order_mark_is_not_part_of_the_first_field(tmp_path):
    # Windows editors save UTF-8 with a BOM; read as text it made the label "\ufeffham",
    # a third class.
    tsv, conllu, txt = tmp_path / "sms.tsv", tmp_path / "x.conllu", tmp_path / "t.txt"
    tsv.write_bytes("ham\tHi\nspam\tWIN\n".encode("utf-8-sig"))
    conllu.write_bytes((row(1, "Hi") + "\n").encode("utf-8-sig"))
    txt.write_bytes("a b\n".encode("utf-8-sig"))
    assert [r["label"] for r in read_labelled_tsv(tsv)] == ["ham", "spam"]
    assert read_conllu(conllu)[0]["tokens"] == ["Hi"]
    assert read_lines(txt) == ["a b"]


@pytest.mark.parametrize("reader", [read_labelled_tsv, read_conllu, read_lines])
def test_a_file_that_is_not_utf8_names_its_line(tmp_path, reader):
    f = tmp_path / "latin1.txt"
    f.write_bytes(b"\n" + "spam\tWIN £100\n".encode("latin-1"))  # line 1 blank: all read on
    with pytest.raises(
        DataFormatError, match=r"latin1.txt:2: not UTF-8 text: byte 0xa3, byte 10 of the line"
    ):
        reader(f)


@pytest.mark.parametrize(
    ("bad_line", "match"),
    [("ham no tab here", "no tab"), ("\tsome text", "empty label"), ("spam\t  ", "empty text")],
)
def test_read_labelled_tsv_malformed(tmp_path, bad_line, match):
    f = tmp_path / "sms.tsv"
    f.write_text(f"ham\tok\n\n{bad_line}\nham\tok\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=f"sms.tsv:3: .*{match}"):
        read_labelled_tsv(f)


def test_read_lines(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text(" a b \n\n  \nc\n", encoding="utf-8")
    assert read_lines(f) == ["a b", "c"]


@pytest.mark.needs_data("ud_en_ewt")
def test_real_ud_english_ewt_counts():
    train = read_conllu(DATA / "ud_en_ewt" / "en_ewt-ud-train.conllu")
    dev = read_conllu(DATA / "ud_en_ewt" / "en_ewt-ud-dev.conllu")
    assert (len(train), sum(len(s["tokens"]) for s in train)) == (12_544, 204_577)
    assert (len(dev), sum(len(s["tokens"]) for s in dev)) == (2_001, 25_147)
    assert len({t for s in train for t in s["upos"]}) == 17


@pytest.mark.needs_data("sms_spam")
def test_real_sms_spam_counts():
    examples = read_labelled_tsv(DATA / "sms_spam" / "SMSSpamCollection")
    assert len(examples) == 4_445
    assert sum(e["label"] == "spam" for e in examples) == 603
