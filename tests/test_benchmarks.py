"""The spam SVM anchor (`benchmarks/spam_svm.py`): its split is the experiment's, its
metrics count as defined."""

import json

import pytest

from rnn_tasks.data import ClassificationDataModule
from rnn_tasks.data.sources import BUILTIN_DIR

pytest.importorskip("sklearn")

DEMO = BUILTIN_DIR / "spam_demo.tsv"
SCRIPT = "benchmarks/spam_svm.py"


def test_binary_metrics_hand_case(load_script):
    truth = [True, True, False, False, False]
    predicted = [True, False, True, False, False]
    m = load_script(SCRIPT).binary_metrics(truth, predicted)
    assert m["acc"] == pytest.approx(3 / 5)
    assert (m["precision"], m["recall"], m["f1"]) == (0.5, 0.5, 0.5)
    assert (m["errors"], m["messages"], m["spam"]) == (2, 5, 2)


def test_binary_metrics_without_predicted_spam_is_zero_not_an_error(load_script):
    m = load_script(SCRIPT).binary_metrics([True, False], [False, False])
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)


def test_scores_the_datamodule_split_and_writes_json(tmp_path, monkeypatch, load_script):
    bench = load_script(SCRIPT)
    loaded, real_load = [], bench.load_spam

    def spy(*args, **kwargs):
        loaded.append(real_load(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(bench, "load_spam", spy)
    data = tmp_path / "sms.tsv"  # the demo messages, some of them repeated
    lines = DEMO.read_text(encoding="utf-8").splitlines()
    data.write_text("\n".join(lines + lines[::7]) + "\n", encoding="utf-8")
    out = tmp_path / "svm.json"
    report = bench.main(["--data", str(data), "--seeds", "3", "--out", str(out)])

    dm = ClassificationDataModule(path=str(data), seed=3)  # the config's split is its default
    dm.setup("fit")
    dm.setup("test")
    for split in ("train", "validation", "test"):
        assert loaded[0][split]["text"] == [r["text"] for r in dm._records[split]]
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    test = report["per_seed"]["3"]["test"]
    assert (test["messages"], test["spam"]) == (
        len(dm._records["test"]),
        sum(r["label"] == "spam" for r in dm._records["test"]),
    )
    assert report["mean_test"]["acc"] == test["acc"]
