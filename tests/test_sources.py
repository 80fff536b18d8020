"""Corpus loaders: splits, local layouts, the Hub (monkeypatched; never the network)."""

import http.server
import socket
import threading
import time
from collections import Counter

import datasets
import pytest
from conftest import DATA

from rnn_tasks.data import DatasetUnavailableError, hub
from rnn_tasks.data.sources import duplicate_key, load_lm_corpus, load_pos, load_spam
from rnn_tasks.data.splits import random_split, stratified_split


def conllu(sentences):
    """CoNLL-U text for [[(word, upos), ...], ...]."""
    blocks = []
    for k, sent in enumerate(sentences):
        rows = [f"# sent_id = {k}"]
        rows += [f"{i}\t{w}\t_\t{t}\tX{t}\t_\t0\tdep\t_\t_" for i, (w, t) in enumerate(sent, 1)]
        blocks.append("\n".join(rows) + "\n")
    return "\n".join(blocks)


def spam_lines(n_ham, n_spam):
    """Distinct messages (not only by their digits, which `duplicate_key` sets aside)."""
    words = ["x" * (i + 1) for i in range(max(n_ham, n_spam))]
    lines = [f"ham\tmessage {w}" for w in words[:n_ham]]
    lines += [f"spam\tWIN {w}" for w in words[:n_spam]]
    return "\n".join(lines) + "\n"


# --- splits --------------------------------------------------------------------------------


def test_stratified_split_keeps_ratios_is_reproducible_and_disjoint():
    labels = ["ham"] * 870 + ["spam"] * 130
    a = stratified_split(labels, 0.1, 0.2, seed=3)
    assert a == stratified_split(labels, 0.1, 0.2, seed=3)
    assert a != stratified_split(labels, 0.1, 0.2, seed=4)
    all_indices = a["train"] + a["validation"] + a["test"]
    assert sorted(all_indices) == list(range(1000))  # disjoint and complete
    assert [len(a[s]) for s in ("train", "validation", "test")] == [700, 100, 200]
    for split in a.values():
        assert Counter(labels[i] for i in split)["spam"] / len(split) == pytest.approx(0.13)


def test_grouped_split_keeps_groups_whole_and_counts_examples():
    # 30 messages sent three times each, 140 once: 13% spam either way.
    labels = ["spam"] * 3 * 10 + ["ham"] * 3 * 20 + ["spam"] * 20 + ["ham"] * 120
    groups = [f"r{i // 3}" for i in range(90)] + [f"u{i}" for i in range(140)]
    split = stratified_split(labels, 0.1, 0.2, seed=5, groups=groups)
    assert sorted(sum(split.values(), [])) == list(range(230))
    where = {i: name for name, indices in split.items() for i in indices}
    for g in set(groups):
        assert len({where[i] for i, h in enumerate(groups) if h == g}) == 1, g
    for name, share in (("validation", 0.1), ("test", 0.2)):
        for label in ("ham", "spam"):
            n = labels.count(label)
            got = sum(labels[i] == label for i in split[name])
            assert round(n * share) <= got < round(n * share) + 3  # whole groups of <= 3
    assert split == stratified_split(labels, 0.1, 0.2, seed=5, groups=groups)
    assert split != stratified_split(labels, 0.1, 0.2, seed=6, groups=groups)


def test_split_without_groups_is_the_split_of_singleton_groups():
    labels = ["ham"] * 87 + ["spam"] * 13
    plain = stratified_split(labels, 0.1, 0.1, seed=2)
    assert plain == stratified_split(labels, 0.1, 0.1, seed=2, groups=[f"m{i}" for i in range(100)])


def test_grouped_split_rejects_a_group_with_two_labels():
    with pytest.raises(ValueError, match="group 'x' has examples labelled 'ham' and 'spam'"):
        stratified_split(["ham", "spam", "ham"], groups=["x", "x", "y"])
    with pytest.raises(ValueError, match="2 groups for 3 labels"):
        stratified_split(["ham", "spam", "ham"], groups=["x", "y"])


def test_random_split_and_fraction_checks():
    s = random_split(50, seed=1)
    assert [len(s[k]) for k in ("train", "validation", "test")] == [40, 5, 5]
    assert sorted(s["train"] + s["validation"] + s["test"]) == list(range(50))
    with pytest.raises(ValueError, match="sum to less than 1"):
        random_split(10, 0.5, 0.5)


# --- local sources -------------------------------------------------------------------------


def test_load_spam_from_file_or_folder(tmp_path):
    (tmp_path / "SMSSpamCollection").write_text(spam_lines(80, 20), encoding="utf-8")
    ds = load_spam(path=str(tmp_path), seed=0)
    assert list(ds) == ["train", "validation", "test"]
    assert ds["train"].column_names == ["text", "label"]
    assert [ds[s].num_rows for s in ds] == [80, 10, 10]
    assert [Counter(ds[s]["label"][:])["spam"] for s in ds] == [16, 2, 2]
    same = load_spam(path=tmp_path / "SMSSpamCollection", seed=0)
    assert same["validation"]["text"][:] == ds["validation"]["text"][:]


def test_duplicate_key_sets_case_spacing_and_digits_aside():
    assert duplicate_key("Call  08712 now!") == duplicate_key("call 09061 NOW!")
    assert duplicate_key("call now") != duplicate_key("call me now")


def test_load_spam_never_tests_a_message_seen_in_training(tmp_path):
    lines = spam_lines(60, 15).splitlines()
    lines += ["spam\tWIN a prize, call 0800 123"] * 8 + ["ham\tok"] * 17  # repeated messages
    (tmp_path / "sms.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for seed in range(5):
        ds = load_spam(path=tmp_path / "sms.tsv", seed=seed)
        seen = {duplicate_key(t) for t in ds["train"]["text"]}
        held_out = ds["validation"]["text"][:] + ds["test"]["text"][:]
        assert not seen & {duplicate_key(t) for t in held_out}
    apart = load_spam(path=tmp_path / "sms.tsv", seed=0, group_duplicates=False)
    assert set(apart["train"]["text"]) & set(apart["test"]["text"])  # what grouping prevents


def test_load_spam_without_test_split(tmp_path):
    (tmp_path / "SMSSpamCollection").write_text(spam_lines(40, 10), encoding="utf-8")
    ds = load_spam(path=str(tmp_path), val_fraction=0.2, test_fraction=0.0)
    assert [ds[s].num_rows for s in ds] == [40, 10, 0]
    (tmp_path / "SMSSpamCollection").write_text(spam_lines(3, 1), encoding="utf-8")
    with pytest.raises(ValueError, match=r"4 examples are too few to split .*the test split"):
        load_spam(path=str(tmp_path), val_fraction=0.0, test_fraction=0.1)


def test_load_pos_from_ud_folder(tmp_path, caplog):
    train = [[("The", "DET"), ("dog", "NOUN")], [("Run", "VERB")]]
    (tmp_path / "xx_t-ud-train.conllu").write_text(conllu(train))
    (tmp_path / "xx_t-ud-dev.conllu").write_text(conllu([[("A", "DET"), ("cat", "NOUN")]]))
    ds = load_pos(path=str(tmp_path))
    assert "using the dev file xx_t-ud-dev.conllu as the test split too" in caplog.text
    assert ds["train"][0] == {"tokens": ["The", "dog"], "tags": ["DET", "NOUN"]}
    assert ds["test"].to_list() == ds["validation"].to_list()
    assert load_pos(path=str(tmp_path), tag_column="xpos")["train"][1]["tags"] == ["XVERB"]
    (tmp_path / "xx_t-ud-test.conllu").write_text(conllu([[("Go", "VERB")]]))
    caplog.clear()
    assert load_pos(path=str(tmp_path))["test"][0]["tokens"] == ["Go"]
    assert "dev file" not in caplog.text


def test_load_pos_single_file_is_split_80_10_10(tmp_path):
    f = tmp_path / "all.conllu"
    f.write_text(conllu([[(f"w{i}", "NOUN")] for i in range(20)]))
    ds = load_pos(path=str(f), seed=5)
    assert [ds[s].num_rows for s in ds] == [16, 2, 2]
    assert ds["test"].to_list() == load_pos(path=str(f), seed=5)["test"].to_list()
    f.write_text(conllu([[(f"w{i}", "NOUN")] for i in range(3)]))
    with pytest.raises(
        ValueError, match=r"all.conllu: 3 examples are too few to split .*validation"
    ):
        load_pos(path=str(f))


def test_load_pos_errors(tmp_path):
    with pytest.raises(ValueError, match=r"tag_column='feats'.*\['upos', 'xpos'\]"):
        load_pos(path=str(tmp_path), tag_column="feats")
    with pytest.raises(
        ValueError, match=r"builtin=True \(data.path, data.builtin.*both name a source.*data=ud_ewt"
    ):
        load_pos(path=str(tmp_path), builtin=True)
    with pytest.raises(FileNotFoundError, match=r"no train treebank .*\*-ud-train\.conllu"):
        load_pos(path=str(tmp_path))


def test_load_lm_corpus_from_ptb_and_wikitext_layouts(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / f"ptb.{split}.txt").write_text(f" a {split} line \n\n b <unk> N \n")
    ds = load_lm_corpus("ptb", path=str(tmp_path))
    assert ds["validation"]["text"][:] == ["a valid line", "b <unk> N"]
    wiki = tmp_path / "wiki"
    wiki.mkdir()
    for split in ("train", "valid", "test"):
        (wiki / f"wiki.{split}.tokens").write_text(f" \n = Title = \n {split} text \n")
    assert load_lm_corpus("wikitext2", path=wiki)["test"]["text"][:] == ["= Title =", "test text"]
    with pytest.raises(ValueError, match=r"name='ptb2'.*\['ptb', 'wikitext2'\]"):
        load_lm_corpus("ptb2")
    with pytest.raises(FileNotFoundError, match=r"ptb\.\{train,valid,test\}\.txt"):
        load_lm_corpus("ptb", path=tmp_path / "empty")
    (tmp_path / "ptb.test.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing for ptb: ptb.test.txt$"):
        load_lm_corpus("ptb", path=tmp_path)


def test_ptb_from_treebank_package_needs_no_network():
    ds = load_lm_corpus("ptb")
    assert [ds[s].num_rows for s in ds] == [42_068, 3_370, 3_761]


# --- the Hub -------------------------------------------------------------------------------


@pytest.fixture
def no_hub(monkeypatch):
    """The Hub is unreachable; `load_dataset` must then never be called."""

    def fail(*args, **kwargs):
        raise AssertionError("load_dataset called although the Hub is unreachable")

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(datasets, "load_dataset", fail)


@pytest.mark.parametrize(
    ("load", "names"),
    [
        (lambda: load_spam(), ["ucirvine/sms_spam", "data.path=", "data.builtin=true"]),
        (lambda: load_pos(), ["commul/universal_dependencies", "en_ewt", "data.builtin=true"]),
        (
            lambda: load_lm_corpus("wikitext2"),
            ["Salesforce/wikitext", "wikitext-2-v1", "data.path=", "data.name=ptb", "treebank"],
        ),
    ],
)
def test_unreachable_hub_fails_at_once_with_the_offline_choices(no_hub, load, names):
    start = time.perf_counter()
    with pytest.raises(DatasetUnavailableError, match="unreachable") as info:
        load()
    assert time.perf_counter() - start < 1.0
    for name in names:
        assert name in str(info.value)


def test_offline_mode_without_cache_is_unavailable(monkeypatch):
    def cache_miss(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hub (offline mode)")

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets, "load_dataset", cache_miss)
    with pytest.raises(DatasetUnavailableError, match="ucirvine/sms_spam.*ConnectionError"):
        load_spam()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_hub_probe_on_localhost(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    start = time.perf_counter()
    assert not hub.hub_reachable(f"http://127.0.0.1:{_free_port()}", timeout=2)  # refused
    assert time.perf_counter() - start < 2.5

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:  # any HTTP answer, even an error status, means the Hub is reachable
        assert hub.hub_reachable(f"http://127.0.0.1:{server.server_port}", timeout=2)
    finally:
        server.shutdown()


@pytest.fixture
def fake_hub(monkeypatch):
    """`load_dataset` answers from a dict of DatasetDicts, as a reachable Hub would."""
    store = {}

    def load_dataset(name, config=None, **kwargs):
        return store[(name, config)]

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: True)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return store


def test_spam_from_hub_maps_class_labels_and_stratifies(fake_hub):
    features = datasets.Features(
        {"sms": datasets.Value("string"), "label": datasets.ClassLabel(names=["ham", "spam"])}
    )
    texts = [f"msg {'x' * (i + 1)}\n" for i in range(50)]
    rows = {"sms": texts, "label": [int(i % 5 == 0) for i in range(50)]}
    fake_hub[("ucirvine/sms_spam", None)] = datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(rows, features=features)}
    )
    ds = load_spam()
    assert [ds[s].num_rows for s in ds] == [40, 5, 5]
    assert [Counter(ds[s]["label"][:])["spam"] for s in ds] == [8, 1, 1]
    assert all(t.startswith("msg ") and t == t.strip() for t in ds["train"]["text"][:])


def test_pos_from_hub_maps_class_label_tags(fake_hub):
    features = datasets.Features(
        {
            "tokens": datasets.List(datasets.Value("string")),
            "upos": datasets.List(datasets.ClassLabel(names=["NOUN", "VERB"])),
        }
    )
    part = datasets.Dataset.from_dict({"tokens": [["dogs", "run"]], "upos": [[0, 1]]}, features)
    fake_hub[("commul/universal_dependencies", "en_ewt")] = datasets.DatasetDict(
        {"train": part, "validation": part, "test": part}
    )
    assert load_pos()["test"][0] == {"tokens": ["dogs", "run"], "tags": ["NOUN", "VERB"]}


def test_wikitext_from_hub_drops_empty_lines(fake_hub):
    part = datasets.Dataset.from_dict({"text": ["", " = A = \n", " some text \n"]})
    fake_hub[("Salesforce/wikitext", "wikitext-2-v1")] = datasets.DatasetDict(
        {"train": part, "validation": part, "test": part}
    )
    assert load_lm_corpus("wikitext2")["train"]["text"][:] == ["= A =", "some text"]


# --- the real local copies -----------------------------------------------------------------


@pytest.mark.needs_data("sms_spam")
def test_real_sms_spam_stratified():
    ds = load_spam(path=str(DATA / "sms_spam"))
    assert sum(ds[s].num_rows for s in ds) == 4_445
    assert sum(Counter(ds[s]["label"][:])["spam"] for s in ds) == 603
    for s in ds:
        assert Counter(ds[s]["label"][:])["spam"] / ds[s].num_rows == pytest.approx(
            603 / 4445, abs=0.005
        )


@pytest.mark.needs_data("ptb")
def test_real_ptb_files_match_the_treebank_package():
    local = load_lm_corpus("ptb", path=str(DATA / "ptb"))
    packaged = load_lm_corpus("ptb")
    for split in ("train", "validation", "test"):
        assert local[split]["text"][:] == packaged[split]["text"][:]
