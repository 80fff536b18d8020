"""The benchmarks: the spam SVM anchor (`benchmarks/spam_svm.py`) scores the experiment's
split with metrics as defined; the step profile (`benchmarks/step_profile.py`) and the speed
comparison (`benchmarks/rnn_speed.py`) write what they measured."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnn_tasks.data import ClassificationDataModule
from rnn_tasks.data.sources import BUILTIN_DIR
from rnn_tasks.nn import RNN

DEMO = BUILTIN_DIR / "spam_demo.tsv"
SCRIPT = "benchmarks/spam_svm.py"


def test_step_profile_counts_one_recurrent_product_per_step(tmp_path):
    out = tmp_path / "profile.json"
    argv = ["--batch", "2", "--steps", "5", "--hidden", "8", "--pairs", "2", "--calls", "2"]
    # A process of its own: the script sets torch's threads and denormal flushing for good.
    script = Path(__file__).parents[1] / "benchmarks" / "step_profile.py"
    subprocess.run([sys.executable, str(script), *argv, "--top", "30", "--out", str(out)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    report = json.loads(out.read_text())
    assert report["shape"] == {"cell": "lstm", "B": 2, "T": 5, "H": 8, "layers": 1,
                               "directions": 1}  # fmt: skip
    ours = {op["op"]: op for op in report["ops"]["ours"]}
    assert ours["aten::addmm_"]["calls_per_step"] == 1  # U h_{t-1}, in place, once a step
    assert report["us_per_step"]["ours"] > 0 and report["ratio"] > 0


@pytest.fixture
def svm(load_script):
    pytest.importorskip("sklearn")
    return load_script(SCRIPT)


def test_binary_metrics_hand_case(svm):
    truth = [True, True, False, False, False]
    predicted = [True, False, True, False, False]
    m = svm.binary_metrics(truth, predicted)
    assert m["acc"] == pytest.approx(3 / 5)
    assert (m["precision"], m["recall"], m["f1"]) == (0.5, 0.5, 0.5)
    assert (m["errors"], m["messages"], m["spam"]) == (2, 5, 2)


def test_binary_metrics_without_predicted_spam_is_zero_not_an_error(svm):
    m = svm.binary_metrics([True, False], [False, False])
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)


def test_scores_the_datamodule_split_and_writes_json(tmp_path, monkeypatch, svm):
    loaded, real_load = [], svm.load_spam

    def spy(*args, **kwargs):
        loaded.append(real_load(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(svm, "load_spam", spy)
    data = tmp_path / "sms.tsv"  # the demo messages, some of them repeated
    lines = DEMO.read_text(encoding="utf-8").splitlines()
    data.write_text("\n".join(lines + lines[::7]) + "\n", encoding="utf-8")
    out = tmp_path / "svm.json"
    report = svm.main(["--data", str(data), "--seeds", "3", "--out", str(out)])

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


def test_the_strong_anchor_adds_character_ngrams_within_words(svm):
    # char_wb pads each word with spaces: " ab " gives " a", "ab", "b ", " ab", "ab ",
    # " ab " (n 2-5); the word part adds "ab".
    vectorizer = svm.vectorizer_for("word+char").fit(["ab"])
    names = sorted(n.split("__", 1)[1] for n in vectorizer.get_feature_names_out())
    assert names == sorted([" a", "ab", "b ", " ab", "ab ", " ab ", "ab"])
    assert len(svm.vectorizer_for("word").fit(["ab"]).get_feature_names_out()) == 1


def test_each_anchor_runs_and_names_itself(tmp_path, svm):
    data = tmp_path / "sms.tsv"
    data.write_text(DEMO.read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path / "lr.json"
    report = svm.main(["--data", str(data), "--seeds", "3", "--features", "word+char",
                       "--classifier", "logreg", "--out", str(out)])  # fmt: skip
    assert "char_wb" in report["model"] and "LogisticRegression" in report["model"]
    assert 0 <= report["mean_test"]["acc"] <= 1


def test_matmul_backends_measures_every_shape_and_both_agree(tmp_path, load_script):
    bench = load_script("benchmarks/matmul_backends.py")
    if not bench.onednn_available():
        pytest.skip("this torch build has no oneDNN linear")
    out = tmp_path / "mm.json"
    report = bench.main(["--threads", "1", "--repeats", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert [r["shape"] for r in report["rows"]] == list(bench.SHAPES)
    for row in report["rows"]:  # the same product: float32 rounding apart
        assert row["max_abs_diff"] < 1e-3 and row["ratio_onednn_over_mkl"] > 0


def test_rnn_speed_quick_writes_every_row(tmp_path):
    out = tmp_path / "speed.json"
    argv = ["--quick", "--threads", "1", "--cells", "gru", "--repeats", "1", "--tokens", "4",
            "--vocab", "99", "--matmul", "blas", "--precisions", "float32,int8,bf16"]  # fmt: skip
    # A process of its own: the script sets torch's threads and matmul backend for good.
    script = Path(__file__).parents[1] / "benchmarks" / "rnn_speed.py"
    done = subprocess.run([sys.executable, str(script), *argv, "--out", str(out)],
                          check=True, capture_output=True, text=True, timeout=300)  # fmt: skip
    report = json.loads(out.read_text())
    env = report["environment"]
    assert (env["matmul_backend"], env["threads"]) == ("blas", 1) and env["cpu"]
    assert f"{env['cpu']}, 1 thread, matmul blas" in done.stdout  # the summary names them
    if env["native_bf16"]:
        assert report["precisions"] == ["float32", "int8", "bf16"]
    else:  # emulated bf16 is skipped, with the reason, unless --force-bf16
        assert report["precisions"] == ["float32", "int8"] and "bf16" in report["skipped"]
    reduced = report["precisions"][1:]
    gru = report["summary"]["gru"]
    for mode in ("train", "infer", "generate"):
        assert gru[mode]["target"] == report["targets"]["gru"][mode]
    for key in ("e2e", *(f"{k}_{p}" for p in reduced for k in ("infer", "e2e"))):
        assert gru[key]["target"] is None and gru[key]["median_ratio"] > 0
    for row in report["grid"]:
        for p in reduced:  # reduced products differ from float32, but not by much
            assert 0 < row[f"infer_{p}"]["max_abs_diff"] < 0.5
    (e2e,) = report["generation_e2e"]
    assert (e2e["vocab"], e2e["tokens"]) == (99, 4)
    assert e2e["float32"]["max_abs_diff"] < 1e-4  # the same weights: torch's logits
    for p in ("float32", *reduced):
        assert e2e[p]["ours_tokens_per_s"] > 0 and e2e[p]["torch_tokens_per_s"] > 0


def test_rnn_speed_end_to_end_decode_draws_torchs_tokens(load_script):
    speed = load_script("benchmarks/rnn_speed.py")
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(32, 32, 2, batch_first=True)
    embed, head = torch.nn.Embedding(99, 32), torch.nn.Linear(32, 99)
    torch_lm = speed.TinyLM(embed, theirs, head)
    ours_lm = speed.TinyLM(embed, RNN.from_torch(theirs), head)
    drawn = speed.decode(torch_lm, speed.torch_step(theirs), 13, seed=3)
    assert torch.equal(speed.decode(ours_lm, ours_lm.rnn.step, 13, seed=3), drawn)
    # The accuracy measure: every step's logits in one pass equal torch's.
    logits = speed.teacher_forced_logits(ours_lm, drawn)
    assert logits.shape == (1, 13, 99)
    torch.testing.assert_close(logits, speed.teacher_forced_logits(torch_lm, drawn))


def test_rnn_speed_skips_emulated_bf16_unless_forced(load_script, monkeypatch):
    speed = load_script("benchmarks/rnn_speed.py")
    asked = ["float32", "int8", "bf16"]
    monkeypatch.setattr(speed, "native_bf16", lambda: False)
    reduced, skipped = speed.choose_precisions(asked, force_bf16=False)
    assert reduced == ["int8"] and "--force-bf16" in skipped["bf16"]
    assert speed.choose_precisions(asked, force_bf16=True) == (["int8", "bf16"], {})
    monkeypatch.setattr(speed, "native_bf16", lambda: True)
    assert speed.choose_precisions(asked, force_bf16=False) == (["int8", "bf16"], {})


def test_ddp_speed_trains_one_and_two_processes_to_the_same_perplexity(tmp_path):
    out = tmp_path / "ddp.json"
    script = Path(__file__).parents[1] / "benchmarks" / "ddp_speed.py"
    tiny = ["data.max_lines=200", "data.batch_size=4", "data.eval_batch_size=4",
            "model.embedding_dim=16", "model.hidden_size=16"]  # fmt: skip
    proc = subprocess.run([sys.executable, str(script), "--out", str(out), "--extra", *tiny],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["processes"] for r in rows] == [1, 2]
    assert rows[1]["val_ppl"] == pytest.approx(rows[0]["val_ppl"], rel=1e-4)
    assert rows[0]["speed_up"] == 1.0 and rows[1]["epoch_train_s"] > 0


def test_data_scale_starts_every_mode_on_the_same_vocabulary(tmp_path):
    out = tmp_path / "scale.json"
    script = Path(__file__).parents[1] / "benchmarks" / "data_scale.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--tokens", "30000", "--windows", "5", "--threads", "1",
         "--workdir", str(tmp_path), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())["after"]
    words = (tmp_path / "corpus" / "ptb.train.txt").read_text().split()
    lines = (tmp_path / "corpus" / "ptb.train.txt").read_text().splitlines()
    assert report["tokens"] == len(words) + len(lines) >= 30000  # <eos> ends every line
    starts = {s["mode"]: s for s in report["starts"]}
    assert list(starts) == ["cold", "cached", "streaming", "streaming-cached"]
    vocab = {"<unk>", "<eos>", *words}
    assert {s["vocab"] for s in starts.values()} == {len(vocab)}
    assert all(0 < s["loader_share"] < 1 and s["first_batch_s"] > 0 for s in starts.values())


def test_gpu_speed_says_it_needs_cuda_where_there_is_none(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the benchmark would run")
    script = Path(__file__).parents[1] / "benchmarks" / "gpu_speed.py"
    argv = [sys.executable, str(script), "--quick", "--out", str(tmp_path / "g.json")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "no CUDA device here" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "g.json").exists()
