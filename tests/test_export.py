"""An export (`scripts/export.py`, `rnn_tasks.export`) against the checkpoint it came from:
the same weights bit for bit, the same predictions, torch alone to load it, a clear error
for a missing or changed file; and `torch.export` programs against the eager models."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from test_train import LM_TINY, make_cfg

from rnn_tasks import load_model
from rnn_tasks.export import CONFIG, WEIGHTS, example_inputs, export_program, save_export
from rnn_tasks.models import Classifier, LanguageModel, Tagger
from rnn_tasks.specs import build_model
from rnn_tasks.tasks import load_task
from rnn_tasks.text import Vocab
from rnn_tasks.text.pipeline import TextPipeline
from rnn_tasks.train import train

ROOT = Path(__file__).parents[1]
TINY = ["model.embedding_dim=16", "model.hidden_size=16", "~logger", "trainer.max_epochs=1",
        "threads=1", "trainer.enable_progress_bar=false"]  # fmt: skip
# A different cell per task, characters for the tagger, tied weights for the LM.
RUNS = {
    "cls": ["task=cls", "model=gru", "task.optimizer=adam"],
    "pos": ["task=pos", "model=lstm", "model.char_embedding_dim=8", "model.char_hidden_size=8"],
    "lm": ["task=lm", "model=elman", "model.tie_weights=true", *LM_TINY],
}
TEXTS = ["WINNER!! Claim your £1000 prize now", "ok see you at 5", "", "Call 08712460324",
         "sorry , I 'll call later", "the company said it expects a loss"]  # fmt: skip
HEAVY = ("lightning", "pytorch_lightning", "lightning_fabric", "hydra", "omegaconf", "datasets")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each task's checkpoint and its export: {task: (checkpoint path, export folder)}."""
    threads = torch.get_num_threads()
    out = {}
    for name, overrides in RUNS.items():
        folder = tmp_path_factory.mktemp(name)
        train(make_cfg(folder, [*overrides, *TINY]))
        torch.set_num_threads(threads)  # train() sets one thread for the process
        ckpt = folder / "checkpoints" / "best.ckpt"
        save_export(load_task(ckpt), folder / "export")
        out[name] = (ckpt, folder / "export")
    return out


def fresh_export(runs, name, tmp_path) -> Path:
    """A copy of an export folder, to change without touching the shared one."""
    folder = tmp_path / "export"
    folder.mkdir()
    for file in (CONFIG, WEIGHTS):
        (folder / file).write_bytes((runs[name][1] / file).read_bytes())
    return folder


@pytest.mark.parametrize("name", list(RUNS))
def test_an_export_has_the_checkpoints_weights_and_pipeline(runs, name):
    ckpt, folder = runs[name]
    task, predictor = load_task(ckpt), load_model(folder)
    assert not predictor.model.training
    assert type(predictor.model) is type(task.model)
    ours, theirs = predictor.model.state_dict(), task.model.state_dict()
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        assert ours[key].dtype == value.dtype and torch.equal(ours[key], value), key
    assert predictor.pipeline == task.pipeline
    if name == "lm":  # tied: one tensor, stored once, shared again after loading
        assert predictor.model.V.weight is predictor.model.encoder.embedding.weight
    # safetensors writes 0600; an export to share is as readable as its config.json
    modes = {f.name: f.stat().st_mode & 0o777 for f in Path(folder).iterdir()}
    assert modes["model.safetensors"] == modes["config.json"], modes


def close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-6), key


def test_an_exported_classifier_predicts_as_its_checkpoint(runs):
    ckpt, folder = runs["cls"]
    task, predictor = load_task(ckpt), load_model(folder)
    assert [label for label, _ in predictor.predict(TEXTS)] == [
        label for label, _ in task.predict(TEXTS)
    ]
    for ours, theirs in zip(predictor.predict_proba(TEXTS), task.predict_proba(TEXTS), strict=True):
        close(ours, theirs)


def test_an_exported_tagger_predicts_as_its_checkpoint(runs):
    ckpt, folder = runs["pos"]
    task, predictor = load_task(ckpt), load_model(folder)
    ours, theirs = predictor.predict(TEXTS, probs=True), task.predict(TEXTS, probs=True)
    assert [[(w, t) for w, t, _ in s] for s in ours] == [[(w, t) for w, t, _ in s] for s in theirs]
    for sentence, reference in zip(ours, theirs, strict=True):
        for (_, _, p), (_, _, q) in zip(sentence, reference, strict=True):
            close(p, q)


def test_an_exported_lm_predicts_as_its_checkpoint(runs):
    ckpt, folder = runs["lm"]
    task, predictor = load_task(ckpt), load_model(folder)
    ours, theirs = predictor.next_words("the company", 5), task.next_words("the company", 5)
    assert [w for w, _ in ours] == [w for w, _ in theirs]
    close(dict(ours), dict(theirs))
    ours, theirs = predictor.prob(["said", "xyzzy"], "the"), task.prob(["said", "xyzzy"], "the")
    assert ours["xyzzy"] == theirs["xyzzy"] == {"in_vocabulary": False, "p": None, "rank": None}
    assert ours["said"]["rank"] == theirs["said"]["rank"]
    assert ours["said"]["p"] == pytest.approx(theirs["said"]["p"], abs=1e-6)
    for ours, theirs in zip(predictor.score(TEXTS), task.score(TEXTS), strict=True):
        assert ours["logprob"] == pytest.approx(theirs["logprob"], abs=1e-5)
        assert ours["unknown"] == theirs["unknown"]


@pytest.mark.parametrize("name", list(RUNS))
def test_build_model_builds_the_tasks_model(runs, name):
    task = load_task(runs[name][0])
    model = build_model(task.task_name, task.hparams)
    assert repr(model) == repr(task.model)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in task.model.state_dict().items()}


def keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value).union(*(keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(keys(v) for v in value))
    return set()


@pytest.mark.parametrize("name", list(RUNS))
def test_an_export_holds_no_optimiser_state_and_is_smaller(runs, name):
    from safetensors import safe_open

    ckpt, folder = runs[name]
    config = json.loads((folder / CONFIG).read_text())
    assert config["task"] == name and config["rnn_tasks_version"]
    found = keys(config) & {"optimizer", "optimizer_states", "lr", "lr_schedulers", "momentum"}
    assert not found, f"{CONFIG} holds training settings {found}"
    with safe_open(folder / WEIGHTS, "pt") as weights:
        stored = set(weights.keys())
    assert stored <= set(load_task(ckpt).model.state_dict())  # the model's tensors, no more
    export = (folder / CONFIG).stat().st_size + (folder / WEIGHTS).stat().st_size
    assert export < ckpt.stat().st_size


def test_pretrained_vectors_in_a_buffer_are_exported(tmp_path):
    vocab = Vocab(["<pad>", "<unk>", "a", "b", "c"]).extended(["glove", "words"])
    hparams = {"vocab": vocab.to_dict(), "tags": ["X", "Y"], "model": {"embedding_dim": 4,
               "hidden_size": 3, "bidirectional": True}}  # fmt: skip
    model = build_model("pos", hparams)
    assert model.encoder.fixed_embedding.shape == (2, 4)
    model.encoder.fixed_embedding.normal_()
    task = SimpleNamespace(task_name="pos", hparams=hparams, model=model,
                           pipeline=TextPipeline("ud", vocab))  # fmt: skip
    save_export(task, tmp_path)
    loaded = load_model(tmp_path).model.encoder.fixed_embedding
    assert torch.equal(loaded, model.encoder.fixed_embedding)


def test_a_missing_file_is_named(runs, tmp_path):
    with pytest.raises(FileNotFoundError, match="no exported model"):
        load_model(tmp_path / "nowhere")
    folder = fresh_export(runs, "cls", tmp_path)
    (folder / WEIGHTS).unlink()
    with pytest.raises(FileNotFoundError, match=f"{WEIGHTS} not found"):
        load_model(folder)
    (folder / CONFIG).unlink()
    with pytest.raises(FileNotFoundError, match=f"{CONFIG} not found"):
        load_model(folder)


def test_changed_weights_are_refused(runs, tmp_path):
    folder = fresh_export(runs, "cls", tmp_path)
    data = bytearray((folder / WEIGHTS).read_bytes())
    data[-1] ^= 0xFF  # one bit pattern of one weight: still a valid safetensors file
    (folder / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{WEIGHTS} is not the weights file"):
        load_model(folder)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: "{not json", "is not valid JSON"),
        (lambda c: {**c, "task": "ner"}, "task must be one of"),
        (lambda c: {k: v for k, v in c.items() if k != "labels"}, "lacks 'labels'"),
        (lambda c: {**c, "format_version": 99}, "format_version 99"),
        (lambda c: {**c, "model": {**c["model"], "class": "Nope"}}, "model.class must be"),
        (lambda c: {**c, "model": {**c["model"], "kwargs": {"nope": 1}}}, "do not build"),
    ],
)
def test_a_changed_config_is_refused(runs, tmp_path, change, message):
    folder = fresh_export(runs, "cls", tmp_path)
    changed = change(json.loads((folder / CONFIG).read_text()))
    (folder / CONFIG).write_text(changed if isinstance(changed, str) else json.dumps(changed))
    with pytest.raises(ValueError, match=CONFIG) as err:
        load_model(folder)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"hidden_size": 17}, f"{WEIGHTS} cannot be read into Classifier"),  # other shapes
        ({"num_layers": 2}, f"{WEIGHTS} does not fit Classifier: missing ['encoder.rnn.cells.2"),
    ],
)
def test_weights_that_do_not_fit_the_config_are_named(runs, tmp_path, change, message):
    folder = fresh_export(runs, "cls", tmp_path)
    config = json.loads((folder / CONFIG).read_text())
    config["model"]["kwargs"].update(change)  # the checksum still matches the weights
    (folder / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ValueError) as err:
        load_model(folder)
    assert message in str(err.value)


def test_load_model_needs_no_lightning_hydra_or_datasets(runs):
    # A fresh interpreter: this process already holds lightning.
    script = f"""
import json, sys
import rnn_tasks
predictor = rnn_tasks.load_model(sys.argv[1])
predictor.predict(["free prize"])
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))))
"""
    done = subprocess.run([sys.executable, "-c", script, str(runs["cls"][1])],
                          capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


# -- torch.export ------------------------------------------------------------------------

SMALL = dict(embedding_dim=6, hidden_size=5)
PROGRAMS = {  # each model, each cell, both directions, stacks, characters, max pooling
    "lm-elman": lambda: LanguageModel(30, **SMALL, cell="elman", num_layers=2),
    "tagger-lstm-chars": lambda: Tagger(30, 4, **SMALL, cell="lstm", bidirectional=True,
                                        num_chars=9, char_embedding_dim=3, char_hidden_size=2),
    "classifier-gru": lambda: Classifier(30, 3, **SMALL, cell="gru", bidirectional=True,
                                         num_layers=2, max_pool=True, padding_idx=0),
}  # fmt: skip


def inputs(model, batch: int, length: int, generator) -> tuple[torch.Tensor, ...]:
    tokens = torch.randint(1, 30, (batch, length), generator=generator)
    if isinstance(model, LanguageModel):
        return (tokens,)
    lengths = torch.randint(1, length + 1, (batch,), generator=generator)
    lengths[0] = length  # right padding: the longest fills the batch
    tokens[torch.arange(length) >= lengths[:, None]] = 0
    if not any(type(m).__name__ == "CharEncoder" for m in model.modules()):
        return tokens, lengths
    return tokens, lengths, torch.randint(0, 9, (batch, length, 4), generator=generator)


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_an_exported_program_runs_any_batch_and_length_as_the_model(name):
    torch.manual_seed(0)
    model = PROGRAMS[name]().eval()
    example = example_inputs(model)  # (2, 3)
    program = export_program(model, example).module()
    generator = torch.Generator().manual_seed(1)
    for batch, length in ((1, 1), (5, 9)):
        args = inputs(model, batch, length, generator)
        with torch.no_grad():
            got, want = program(*args), model(*args)
        got, want = torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(want)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape
            torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_the_export_script_writes_an_export_and_a_program(runs, tmp_path):
    ckpt, _ = runs["pos"]
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "export.py"),
                           f"ckpt_path={ckpt}", f"out={tmp_path}", "program=true", "threads=1"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "of the checkpoint" in proc.stdout
    predictor = load_model(tmp_path)
    program = torch.export.load(tmp_path / "model.pt2").module()
    args = inputs(predictor.model, 3, 6, torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(program(*args), predictor.model(*args), atol=1e-5, rtol=1e-5)
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "export.py"),
                          f"ckpt_path={tmp_path / 'none.ckpt'}", f"out={tmp_path}"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert bad.returncode == 2 and "checkpoint not found" in bad.stderr
