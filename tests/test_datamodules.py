"""The three DataModules on tiny files: batches, padding, adoption, BPTT windows."""

import datasets
import pytest
import torch
from conftest import DATA

from rnn_tasks.data import ClassificationDataModule, LMDataModule, TaggingDataModule, hub
from rnn_tasks.data.errors import DataFormatError
from rnn_tasks.text import Vocab


def write_conllu(path, sentences):
    """Writes [[(word, tag), ...], ...] as CoNLL-U."""
    blocks = [
        "\n".join(f"{i}\t{w}\t_\t{t}\t_\t_\t0\tdep\t_\t_" for i, (w, t) in enumerate(s, 1))
        for s in sentences
    ]
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


# --- tagging -------------------------------------------------------------------------------

TRAIN = [
    [("The", "DET"), ("dog", "NOUN"), ("barks", "VERB")],
    [("Dogs", "NOUN"), ("run", "VERB")],
    [("the", "DET"), ("cat", "NOUN"), ("sleeps", "VERB"), (".", "PUNCT")],
    [("Run", "VERB")],
]


@pytest.fixture
def ud_dir(tmp_path):
    write_conllu(tmp_path / "en_toy-ud-train.conllu", TRAIN)
    write_conllu(tmp_path / "en_toy-ud-dev.conllu", [[("A", "DET"), ("dog", "NOUN")]])
    write_conllu(tmp_path / "en_toy-ud-test.conllu", [[("Cats", "NOUN"), ("sleep", "VERB")]])
    return tmp_path


def test_tagging_batches_are_padded_with_pad_id_and_ignore_index(ud_dir):
    dm = TaggingDataModule(path=str(ud_dir), batch_size=4)
    dm.setup("fit")
    assert dm.tags == ["DET", "NOUN", "PUNCT", "VERB"]
    batch = next(iter(dm.train_dataloader()))
    tokens, lengths, tags = batch["tokens"], batch["lengths"], batch["tags"]
    assert tokens.shape == tags.shape == (4, 4) and tokens.dtype == tags.dtype == torch.long
    assert sorted(lengths.tolist()) == [1, 2, 3, 4]
    pad = torch.arange(4)[None, :] >= lengths[:, None]  # (B, T)
    assert (tokens[pad] == dm.vocab.pad_id).all() and (tags[pad] == -100).all()
    assert (tags[~pad] >= 0).all()
    for row, words in enumerate(batch["words"]):  # raw words, original case
        assert words in [[w for w, _ in s] for s in TRAIN]
        assert dm.vocab.decode(tokens[row, : len(words)]) == words  # lowercase=False


def test_tagging_lowercase_only_affects_vocab_lookup(ud_dir):
    dm = TaggingDataModule(path=str(ud_dir), lowercase=True, batch_size=4)
    dm.setup()
    assert "The" not in dm.vocab and "the" in dm.vocab
    batch = next(iter(dm.test_dataloader()))
    assert batch["words"] == [["Cats", "sleep"]]
    assert dm.vocab.decode(batch["tokens"][0]) == ["<unk>", "<unk>"]


@pytest.mark.parametrize("zero_digits", [False, True])
def test_tagging_zero_digits_only_affects_vocab_lookup(tmp_path, zero_digits):
    write_conllu(tmp_path / "en_toy-ud-train.conllu", [[("Call", "VERB"), ("911", "NUM")]])
    write_conllu(tmp_path / "en_toy-ud-dev.conllu", [[("Call", "VERB")]])
    write_conllu(tmp_path / "en_toy-ud-test.conllu", [[("Call", "VERB"), ("112", "NUM")]])
    dm = TaggingDataModule(path=str(tmp_path), zero_digits=zero_digits)
    dm.setup()
    batch = next(iter(dm.test_dataloader()))
    assert batch["words"] == [["Call", "112"]]
    number = "000" if zero_digits else "<unk>"
    assert dm.vocab.decode(batch["tokens"][0]) == ["Call", number]
    # spelled as written ("2" is not a training character), padded to "Call"
    assert dm.chars.decode(batch["chars"][0, 1].tolist()) == ["1", "1", "<unk>", "<pad>"]


def test_tagging_train_shuffle_is_seeded_and_eval_is_ordered(ud_dir):
    def first_batches(seed):
        dm = TaggingDataModule(path=str(ud_dir), batch_size=2, eval_batch_size=3, seed=seed)
        dm.setup()
        return [b["words"] for b in dm.train_dataloader()], dm

    a, dm = first_batches(0)
    assert a == first_batches(0)[0]
    assert any(first_batches(s)[0] != a for s in range(1, 6))
    assert next(iter(dm.val_dataloader()))["tokens"].shape[0] == 1


def test_tagging_metadata_adopt_and_test_file(ud_dir, tmp_path_factory):
    dm = TaggingDataModule(path=str(ud_dir))
    dm.setup()
    meta = dm.metadata()
    torch.save(meta, ud_dir / "meta.pt")
    meta = torch.load(ud_dir / "meta.pt", weights_only=True)  # plain types only

    held_out = write_conllu(tmp_path_factory.mktemp("eval") / "x.conllu", [[("dog", "NOUN")]])
    # The source is gone: testing an adopted vocabulary on a test file must not need it.
    again = TaggingDataModule(path=str(ud_dir / "missing"), test_file=str(held_out))
    again.adopt(meta)
    again.setup("test")
    assert again.vocab == dm.vocab and again.tags == dm.tags
    batch = next(iter(again.test_dataloader()))
    assert batch["tags"].tolist() == [[dm.tags.index("NOUN")]]

    bad = write_conllu(tmp_path_factory.mktemp("bad") / "x.conllu", [[("dog", "ADJ")]])
    other = TaggingDataModule(path=str(ud_dir), test_file=str(bad))
    other.adopt(meta)
    with pytest.raises(
        DataFormatError, match=r"x.conllu:1: tag 'ADJ' in the example from this line"
    ):
        other.setup()
    with pytest.raises(RuntimeError, match="before setup"):
        dm.adopt(meta)
    with pytest.raises(ValueError, match="tags"):
        TaggingDataModule(path=str(ud_dir)).adopt({"vocab": meta["vocab"]})


@pytest.mark.parametrize("module", ["tagging", "classification"])
def test_pretrained_words_join_the_vocabulary_after_the_training_words(ud_dir, tmp_path, module):
    glove = tmp_path / "glove.txt"
    words = ("the", "cats", "1990s", "sleep", "zebra")
    glove.write_text("".join(f"{w} 0.5 0.5\n" for w in words))
    if module == "tagging":  # case kept in the lookup, digits folded
        dm = TaggingDataModule(path=str(ud_dir), zero_digits=True, pretrained_words=str(glove),
                               pretrained_words_limit=4)  # fmt: skip
        added = ["cats", "sleep"]  # not "1990s": its key 0000s has no line in the file
    else:  # lowercase lookup (the default), digits kept
        spam = tmp_path / "sms.txt"
        spam.write_text("".join(f"{y}\tthe dog\n" for y in ["ham", "spam"] * 30))
        dm = ClassificationDataModule(path=str(spam), group_duplicates=False,
                                      pretrained_words=str(glove),
                                      pretrained_words_limit=4)  # fmt: skip
        added = ["cats", "1990s", "sleep"]
    dm.setup()
    trained = dm.vocab.itos[: dm.vocab.added_from]  # the training words, as without the file
    assert trained[:2] == ["<pad>", "<unk>"] and "the" in trained and "cats" not in trained
    assert dm.vocab.itos[dm.vocab.added_from :] == added  # limit 4: no "zebra"
    again = type(dm)(path=str(tmp_path / "gone"))
    again.adopt(dm.metadata())
    assert again.vocab == dm.vocab
    if module == "tagging":  # the test sentence "Cats sleep", unseen in training
        batch = next(iter(dm.test_dataloader()))
        assert dm.vocab.decode(batch["tokens"][0]) == ["cats", "sleep"]  # Cats: its lowercase
    for limit in (0, None, 1e3):
        with pytest.raises(ValueError, match="pretrained_words_limit must be a whole number"):
            type(dm)(pretrained_words=str(glove), pretrained_words_limit=limit)


def test_bad_choice_lists_options():
    with pytest.raises(ValueError, match=r"\['upos', 'xpos'\]"):
        TaggingDataModule(tag_column="deprel")
    with pytest.raises(ValueError, match=r"\['ptb', 'wikitext2'\]"):
        LMDataModule(name="ptb3")


# --- classification ------------------------------------------------------------------------

NAMES = "ann bob cat dan eve fay gus hal ivy jan kim lou max ned oli pam".split()
SMS = "\n".join(  # a name each: messages that differ only in digits would count as one
    [f"ham\tSee you at {i} o'clock, {name}?" for i, name in enumerate(NAMES)]
    + [f"spam\tWIN £{i}00 now! Call 0800{i} {name}" for i, name in enumerate(NAMES[:4])]
)


@pytest.mark.parametrize("zero_digits", [False, True])
def test_classification_zero_digits_reads_numbers_by_shape(tmp_path, zero_digits):
    (tmp_path / "SMSSpamCollection").write_text(SMS + "\n", encoding="utf-8")
    test_file = tmp_path / "test.tsv"
    test_file.write_text("spam\tWin £900, call 08009\n", encoding="utf-8")
    dm = ClassificationDataModule(
        path=str(tmp_path), zero_digits=zero_digits, test_file=str(test_file)
    )
    dm.setup()
    tokens = dm.vocab.decode(next(iter(dm.test_dataloader()))["tokens"][0])
    if zero_digits:
        assert tokens == ["win", "£000", ",", "call", "00000"]
    else:
        assert tokens == ["win", "<unk>", ",", "call", "<unk>"]  # no £900 or 08009 in training


def test_classification_batches_labels_and_class_counts(tmp_path):
    (tmp_path / "SMSSpamCollection").write_text(SMS + "\n", encoding="utf-8")
    dm = ClassificationDataModule(path=str(tmp_path), batch_size=5, val_fraction=0.25)
    dm.setup("fit")
    assert dm.labels == ["ham", "spam"]
    # 16 ham -> 4 validation + 2 test; 4 spam -> 1 validation + 0 test (rounded per class)
    assert dm.class_counts() == [10, 3]
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"tokens", "lengths", "label", "chars"}
    assert batch["tokens"].shape == (5, int(batch["lengths"].max()))
    # chars spell each word as written (capitals kept) while tokens are lowercased
    assert batch["chars"].shape[:2] == batch["tokens"].shape and "W" in dm.chars
    for i, n in enumerate(batch["lengths"].tolist()):
        for t in range(n):
            spelled = batch["chars"][i, t]
            word = "".join(dm.chars.decode(spelled[spelled != 0])).lower()
            assert dm.vocab.encode([word]) == [int(batch["tokens"][i, t])]
    assert batch["label"].shape == (5,) and batch["label"].dtype == torch.long
    pad = torch.arange(batch["tokens"].shape[1])[None, :] >= batch["lengths"][:, None]
    assert (batch["tokens"][pad] == dm.vocab.pad_id).all()
    meta = dm.metadata()
    assert meta["labels"] == ["ham", "spam"] and Vocab.from_dict(meta["vocab"]) == dm.vocab


@pytest.mark.parametrize(
    ("module", "special", "missing"),
    [(ClassificationDataModule, "pad", "unk"), (TaggingDataModule, "unk", "pad")],
)
def test_adopting_a_vocabulary_without_the_specials_batches_need_fails(module, special, missing):
    only = {special: f"<{special}>", missing: None}  # a vocabulary with one of the two
    vocab = Vocab.build([["win"]], specials=(f"<{special}>",), **only).to_dict()
    meta = {"vocab": vocab, "chars": Vocab.build([["w"]]).to_dict(), "labels": [], "tags": []}
    with pytest.raises(ValueError, match=f"the adopted vocabulary has no {missing} token"):
        module(builtin=True).adopt(meta)


def test_classification_adopt_rejects_unknown_labels(tmp_path):
    (tmp_path / "SMSSpamCollection").write_text(SMS, encoding="utf-8")
    (tmp_path / "eval.tsv").write_text("ham\thi\nphish\tclick here\n", encoding="utf-8")
    dm = ClassificationDataModule(path=str(tmp_path))
    dm.setup()
    other = ClassificationDataModule(path=str(tmp_path), test_file=str(tmp_path / "eval.tsv"))
    other.adopt(dm.metadata())
    with pytest.raises(
        DataFormatError, match=r"eval.tsv:2: label 'phish' in the .* not one of .*'spam'"
    ):
        other.setup("test")


def test_empty_message_is_one_unk_token(monkeypatch):
    features = datasets.Features(
        {"sms": datasets.Value("string"), "label": datasets.ClassLabel(names=["ham", "spam"])}
    )
    part = datasets.Dataset.from_dict(
        {"sms": ["hi there", "  ", "WIN"], "label": [0, 0, 1]}, features
    )
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(
        datasets,
        "load_dataset",
        lambda *a, **k: datasets.DatasetDict({"train": part, "validation": part, "test": part}),
    )
    dm = ClassificationDataModule(eval_batch_size=3)
    dm.setup()
    batch = next(iter(dm.test_dataloader()))
    assert batch["lengths"].tolist() == [2, 1, 1]
    assert batch["tokens"][1, 0].item() == dm.vocab.unk_id
    assert batch["label"].tolist() == [0, 0, 1]


# --- language modelling --------------------------------------------------------------------


@pytest.fixture
def ptb_dir(tmp_path):
    text = {
        "train": [f"the cat sat on mat number {i} <unk> N" for i in range(12)],
        "valid": ["the dog sat", "a cat ran off"] * 5,
        "test": ["the mat sat on the cat"] * 4,
    }
    for split, lines in text.items():
        (tmp_path / f"ptb.{split}.txt").write_text("".join(f" {s} \n" for s in lines))
    return tmp_path


def test_lm_stream_and_vocab(ptb_dir):
    dm = LMDataModule(path=str(ptb_dir), batch_size=3, eval_batch_size=2, bptt=4)
    dm.setup()
    assert dm.vocab.itos[:2] == ["<unk>", "<eos>"] and dm.vocab.pad_id is None
    assert "N" in dm.vocab  # not lowercased by default
    valid = dm.tokens("validation")
    assert valid.shape == (45,)  # 5 * (3 + 1) + 5 * (4 + 1)
    words = ["the", "<unk>", "sat", "<eos>", "<unk>", "cat", "<unk>", "<unk>"]  # dog, a, ran
    assert dm.vocab.decode(valid[:8]) == words
    assert dm.tokens("train")[7].item() == dm.vocab.unk_id  # the literal <unk> is the special
    assert dm.metadata() == {"vocab": dm.vocab.to_dict()}


@pytest.mark.parametrize(("split", "rows"), [("train", 3), ("validation", 2), ("test", 2)])
def test_lm_windows_are_contiguous_shifted_and_cover_the_stream(ptb_dir, split, rows):
    dm = LMDataModule(path=str(ptb_dir), batch_size=3, eval_batch_size=2, bptt=4)
    dm.setup()
    loader = {"train": dm.train_dataloader, "validation": dm.val_dataloader}.get(
        split, dm.test_dataloader
    )()
    windows = list(loader)
    stream = dm.tokens(split)
    n = stream.numel() // rows
    assert len(loader) == len(windows) == -(-(n - 1) // 4)
    assert all(w["input"].shape == w["target"].shape for w in windows)
    assert all(w["input"].shape == (rows, 4) for w in windows[:-1])
    assert 1 <= windows[-1]["input"].shape[1] <= 4
    inputs = torch.cat([w["input"] for w in windows], dim=1)  # (B, N-1)
    targets = torch.cat([w["target"] for w in windows], dim=1)  # (B, N-1)
    rows_of_stream = stream[: n * rows].view(rows, n)
    # Window k+1 continues window k in every row; the target is the input shifted by one.
    assert torch.equal(inputs, rows_of_stream[:, :-1])
    assert torch.equal(targets, rows_of_stream[:, 1:])
    assert targets.numel() == n * rows - rows == loader.dataset.num_predictions


def test_lm_adopt_max_lines_and_test_file(ptb_dir, tmp_path_factory):
    dm = LMDataModule(path=str(ptb_dir), max_lines=2, batch_size=2, eval_batch_size=2)
    dm.setup()
    assert dm.tokens("train").numel() == 2 * 10  # 9 words + <eos> per line
    held_out = tmp_path_factory.mktemp("eval") / "t.txt"
    held_out.write_text("the cat\nzebra sat\n")
    again = LMDataModule(path=str(ptb_dir / "missing"), test_file=str(held_out))
    again.adopt(dm.metadata())
    again.setup("test")
    assert dm.vocab.decode(again.tokens("test")) == ["the", "cat", "<eos>", "<unk>", "sat", "<eos>"]
    # 6 tokens cannot fill 10 rows of 2: the error names the file and the setting to lower.
    short = LMDataModule(path=str(ptb_dir / "missing"), test_file=str(held_out), batch_size=10)
    short.adopt(dm.metadata())
    short.setup("test")
    with pytest.raises(
        ValueError, match=r"t.txt has 6 tokens, too few for data.eval_batch_size=10"
    ):
        short.test_dataloader()


@pytest.mark.needs_data("ptb")
def test_real_ptb_counts():
    dm = LMDataModule(path=str(DATA / "ptb"))
    dm.setup()
    assert len(dm.vocab) == 10_000
    assert [dm.tokens(s).numel() for s in ("train", "validation", "test")] == [
        929_589,
        73_760,
        82_430,
    ]
    assert len(dm.train_dataloader()) == -(-(929_589 // 20 - 1) // 35)


@pytest.mark.needs_data("ud_en_ewt")
def test_real_ud_english_ewt_datamodule():
    dm = TaggingDataModule(path=str(DATA / "ud_en_ewt"))
    dm.setup()
    assert len(dm.tags) == 17
    train = dm.train_dataloader().dataset
    assert (len(train), sum(len(x["ids"]) for x in train)) == (12_544, 204_577)
    assert len(dm.val_dataloader().dataset) == 2_001


@pytest.mark.needs_data("sms_spam")
def test_real_sms_spam_datamodule():
    dm = ClassificationDataModule(path=str(DATA / "sms_spam"))
    dm.setup()
    loaders = (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader())
    sizes = [len(loader.dataset) for loader in loaders]
    assert sum(sizes) == 4_445
    assert dm.class_counts()[1] == 603 - 2 * round(603 * 0.1)
