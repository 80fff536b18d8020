"""End to end through `train(cfg)` with the real Hydra configs (tiny sizes, no network)."""

import json
import platform
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from rnn_tasks.data.sources import BUILTIN_DIR
from rnn_tasks.evaluate import evaluate, evaluation_data
from rnn_tasks.runtime import text_setting
from rnn_tasks.tasks import load_task
from rnn_tasks.text.embeddings import GLOVE_50D
from rnn_tasks.train import build_datamodule, checkpoint_metadata, partial_data, train
from rnn_tasks.train_ensemble import train_ensemble

CONFIGS = str(Path(__file__).parents[1] / "configs")
TINY = ["model.embedding_dim=16", "model.hidden_size=16", "~logger"]
LM_TINY = ["data.max_lines=300", "data.batch_size=4", "data.bptt=10"]


def make_cfg(tmp_path, overrides, name="train"):
    with initialize_config_dir(CONFIGS, version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)  # lets ${hydra:...} resolve outside a Hydra app
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path)
        del cfg.hydra
    return cfg


def test_the_sweep_folder_resolves_before_hydra_config_is_set():
    # `-m`: Hydra's sweeper names the sweep folder before it sets HydraConfig, so the folder
    # cannot depend on `${hydra:...}` (run_name does); each job's subfolder can.
    with initialize_config_dir(CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=["task=cls"], return_hydra_config=True)
    HydraConfig.instance().cfg = None
    assert str(cfg.hydra.sweep.dir).startswith("multirun/")


@pytest.mark.parametrize(
    "overrides",
    [
        ["task=lm", *LM_TINY],
        ["task=lm", "model=ffnn", *LM_TINY],
        ["task=lm", "model=elman", "model.tie_weights=true", "task.lr_milestones=[1]", *LM_TINY],
        ["task=pos"],
        ["task=pos", "model=gru", "model.char_embedding_dim=8", "model.word_dropout=0.2"],
        [
            "task=cls",
            "task.class_weighting=balanced",
            "model.char_embedding_dim=8",
            "model.word_dropout=0.2",
            "model.max_pool=true",
        ],
    ],
    ids=["lm", "lm-ffnn", "lm-elman-tied", "pos", "pos-gru-chars", "cls-balanced-chars"],
)
def test_every_task_config_runs_fast_dev_run(tmp_path, overrides):
    results = tmp_path / "results" / "x.json"
    cfg = make_cfg(tmp_path, [*overrides, "trainer=debug", *TINY, f"results={results}"])
    metrics = train(cfg)
    assert not results.exists()  # a one-batch check leaves an experiment's results alone
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["metrics"] == metrics and summary["parameters"] > 0
    assert summary["device"] == f"{platform.machine()} CPU, {torch.get_num_threads()} thread(s)"


def test_a_run_on_part_of_the_data_leaves_the_results_file_alone(tmp_path, caplog):
    results = tmp_path / "results" / "x.json"
    short = ["task=cls", *TINY, "trainer.max_epochs=1", f"results={results}"]
    with caplog.at_level("WARNING", logger="rnn_tasks.train"):
        train(make_cfg(tmp_path / "a", [*short, "trainer.limit_train_batches=2"]))
    assert not results.exists() and (tmp_path / "a" / "metrics.json").is_file()
    assert "trainer.limit_train_batches=2 runs on part of the data" in caplog.text
    train(make_cfg(tmp_path / "b", short))  # all the data, however few epochs: written
    assert json.loads(results.read_text())["task"] == "cls"


@pytest.mark.parametrize(
    ("trainer", "partial"),
    [
        ({}, False),
        ({"limit_train_batches": None, "fast_dev_run": False}, False),
        ({"limit_train_batches": 1.0}, False),
        ({"limit_train_batches": 1}, True),  # an int counts batches: one batch
        ({"limit_val_batches": 0.5}, True),
        ({"limit_test_batches": 3}, True),
        ({"fast_dev_run": True}, True),
    ],
)
def test_partial_data_tells_a_share_from_a_count(trainer, partial):
    assert (partial_data(OmegaConf.create(trainer)) is not None) == partial


@pytest.mark.parametrize(
    ("typed", "text"), [("text=2020", "2020"), ("+text=1e3", "1e3"), ("text=null", "null"),
                        ('text="3 cats"', "3 cats"), ("text=true", "true")],
)  # fmt: skip
def test_a_text_setting_is_read_as_typed(typed, text):
    with initialize_config_dir(CONFIGS, version_base="1.3"):
        overrides = ["ckpt_path=x.ckpt", typed] if typed.startswith("text") else [typed]
        cfg = compose("predict", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    assert text_setting(cfg, "text") == text


def test_task_defaults_pick_their_data_and_model(tmp_path):
    cfg = make_cfg(tmp_path, ["task=pos"])
    assert cfg.data.builtin and cfg.model.bidirectional and cfg.model.cell == "lstm"
    cfg = make_cfg(tmp_path, ["task=cls", "data=sms_spam", "model=gru"])
    assert cfg.data._target_.endswith("ClassificationDataModule") and cfg.model.cell == "gru"
    assert cfg.model.bidirectional and not cfg.data.builtin
    cfg = make_cfg(tmp_path, ["task=lm"])
    assert cfg.data.name == "ptb" and not cfg.model.bidirectional


def pos_run(tmp_path, *extra):
    overrides = ["task=pos", *TINY, "trainer.max_epochs=1", "trainer.limit_train_batches=3",
                 "trainer.enable_progress_bar=false", *extra]  # fmt: skip
    cfg = make_cfg(tmp_path, overrides)
    return cfg, train(cfg)


def test_checkpoint_round_trip_gives_the_same_predictions(tmp_path):
    cfg, metrics = pos_run(tmp_path)
    best = tmp_path / "checkpoints" / "best.ckpt"
    assert best.is_file() and (tmp_path / "checkpoints" / "last.ckpt").is_file()
    raw = torch.load(best, map_location="cpu", weights_only=True)  # plain types only
    assert raw["rnn_tasks"]["task"] == "pos"
    task = load_task(best)
    again = load_task(best)
    sentence = "The cat sat on the mat .".split()
    assert task.predict(sentence) == again.predict(sentence)
    tokens = torch.tensor([task.vocab.encode(sentence)])
    torch.testing.assert_close(task(tokens), again(tokens))
    # The loaded weights are the trained ones: same test accuracy as the run reported.
    dm = build_datamodule(cfg, "test", checkpoint_metadata(best))
    result = L.Trainer(logger=False, enable_progress_bar=False).test(task, dm, verbose=False)
    assert result[0]["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_last_checkpoint_is_the_last_epoch_when_the_best_is_an_earlier_one(tmp_path):
    # A learning rate far below float32's resolution leaves the weights as they are, so the
    # monitored accuracy never beats epoch 0's: best.ckpt stays there, last.ckpt moves on.
    pos_run(tmp_path, "trainer.max_epochs=3", "task.lr=1e-20")
    load = lambda name: torch.load(tmp_path / "checkpoints" / name, weights_only=True)  # noqa: E731
    assert (load("best.ckpt")["epoch"], load("last.ckpt")["epoch"]) == (0, 2)
    assert load("last.ckpt")["global_step"] == 9  # 3 batches an epoch


@pytest.mark.parametrize(
    "extra", [[], ["ema_decay=0.5"], ["nt_asgd=1"]], ids=["plain", "weight-average", "nt-asgd"]
)
def test_resume_from_last_checkpoint_continues_the_run(tmp_path, extra):
    pos_run(tmp_path / "a", *extra)
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    cfg, _ = pos_run(tmp_path / "b", f"ckpt_path={last}", "trainer.max_epochs=2", *extra)
    resumed = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == 1  # epoch 0 came from the first run


@pytest.mark.parametrize("moved", [False, True], ids=["in-place", "run-folder-moved"])
def test_a_run_resumed_in_a_new_folder_keeps_the_best_checkpoint_it_had(tmp_path, moved):
    # Frozen weights (lr far below float32's resolution): epoch 1 only ties epoch 0, so
    # the best checkpoint must stay epoch 0's. Lightning alone restores the best score
    # only in the same folder, and so made the first epoch after a resume the best.
    pos_run(tmp_path / "a", "task.lr=1e-20")
    old = tmp_path / "a"
    if moved:  # the record names a/checkpoints; the files are now beside the resumed one
        old = old.rename(tmp_path / "elsewhere")
    last = old / "checkpoints" / "last.ckpt"
    pos_run(tmp_path / "b", f"ckpt_path={last}", "trainer.max_epochs=2", "task.lr=1e-20")
    best = tmp_path / "b" / "checkpoints" / "best.ckpt"
    assert torch.load(best, weights_only=True)["epoch"] == 0
    assert torch.load(best.with_name("last.ckpt"), weights_only=True)["epoch"] == 1
    summary = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert Path(summary["best_checkpoint"]) == best  # tested from the new folder
    assert (old / "checkpoints" / "best.ckpt").is_file()  # the old run untouched


def test_resuming_on_another_split_is_an_error_that_names_the_setting(tmp_path):
    pos_run(tmp_path / "a", "seed=1")
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    with pytest.raises(ValueError, match=r"last.ckpt was trained with data.seed=1 \(this run: 2\)"):
        pos_run(tmp_path / "b", f"ckpt_path={last}", "trainer.max_epochs=2", "seed=2")
    assert not (tmp_path / "b" / "checkpoints").exists()  # stopped before training
    # How the same examples are batched may change.
    pos_run(tmp_path / "c", f"ckpt_path={last}", "trainer.max_epochs=2", "seed=1",
            "data.batch_size=8")  # fmt: skip


def test_a_new_run_in_a_folder_with_checkpoints_is_refused(tmp_path):
    pos_run(tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "checkpoints").iterdir()}
    record = (tmp_path / ".hydra" / "overrides.yaml").read_text()
    # Lightning would name the new best best-v1.ckpt, leaving best.ckpt the old run's.
    with pytest.raises(
        ValueError, match=r"holds another run's checkpoints \(best.ckpt, last.ckpt\)"
    ):
        pos_run(tmp_path, "model.hidden_size=24")
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "checkpoints").iterdir()} == before
    assert (tmp_path / ".hydra" / "overrides.yaml").read_text() == record  # still the first's


def test_resuming_another_model_is_an_error_that_names_the_setting(tmp_path):
    pos_run(tmp_path / "a")
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    with pytest.raises(ValueError, match=r"model.hidden_size=16 \(this run: 24\); \d+ weights"):
        pos_run(tmp_path / "b", f"ckpt_path={last}", "trainer.max_epochs=2",
                "model.hidden_size=24")  # fmt: skip
    assert not (tmp_path / "b" / "checkpoints").exists()  # stopped before training
    # A setting that shapes no weight may change: the run goes on.
    pos_run(tmp_path / "c", f"ckpt_path={last}", "trainer.max_epochs=2", "model.dropout=0.1")


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in (Path(CONFIGS) / "experiment").glob("*.yaml"))
)
def test_experiment_configs_compose_and_name_their_results(tmp_path, name):
    cfg = make_cfg(tmp_path, [f"experiment={name}"])
    assert cfg.results == f"results/{name}.json" and cfg.run_name == name
    assert (cfg.data.path or "").startswith("../shared/data/") or cfg.data.get("name") == "ptb"


def test_data_root_moves_every_experiments_data(tmp_path, monkeypatch):
    assert make_cfg(tmp_path, ["experiment=ud_pos", "data_root=/d"]).data.path == "/d/ud_en_ewt"
    monkeypatch.setenv("RNN_TASKS_DATA", "/mnt/corpora")
    assert make_cfg(tmp_path, ["experiment=sms_spam"]).data.path == "/mnt/corpora/sms_spam"


def test_the_glove_experiment_reads_what_glove_from_pypi_writes(tmp_path, load_script):
    module = load_script("scripts/glove_from_pypi.py")
    cfg = make_cfg(tmp_path, ["experiment=ud_pos_glove"])
    assert Path(cfg.task.embeddings.path) == module.DEFAULT_OUT
    assert module.DEFAULT_OUT.name == GLOVE_50D  # the file whose absence names the script
    assert cfg.model.embedding_dim == 50


def test_weight_average_is_what_the_run_checkpoints_and_tests(tmp_path):
    cfg, metrics = pos_run(tmp_path, "ema_decay=0.5")
    best = tmp_path / "checkpoints" / "best.ckpt"
    ckpt = torch.load(best, weights_only=True)
    averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]  # raw: to resume from
    assert averaged.keys() == raw.keys()
    assert any(not torch.equal(averaged[k], raw[k]) for k in raw)
    task = load_task(best)
    for name, value in task.state_dict().items():
        torch.testing.assert_close(value, averaged[name])
    # The run tested the average (the checkpoint's state_dict), not the raw weights.
    dm = build_datamodule(cfg, "test", checkpoint_metadata(best))
    result = L.Trainer(logger=False, enable_progress_bar=False).test(task, dm, verbose=False)
    assert result[0]["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-6)


def test_ensemble_run_tests_the_members_averaged_probabilities(tmp_path):
    overrides = ["task=cls", *TINY, "trainer.max_epochs=1", "trainer.limit_train_batches=3",
                 "trainer.enable_progress_bar=false", "model.char_embedding_dim=4",
                 "ensemble_size=2", "seed=7", f"results={tmp_path / 'ensemble.json'}"]  # fmt: skip
    metrics = train_ensemble(make_cfg(tmp_path, overrides))
    assert not (tmp_path / "ensemble.json").exists()  # part of the data: results/ untouched
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert [m["seed"] for m in summary["members"]] == [7, 8]
    members = [json.loads((tmp_path / f"seed{s}" / "metrics.json").read_text()) for s in (7, 8)]
    assert [m["config"]["data"]["seed"] for m in members] == [7, 7]  # one split for both
    # Reference: each member's best checkpoint on the test set, probabilities averaged by hand.
    tasks = [load_task(m["best_checkpoint"]) for m in members]
    dm = build_datamodule(
        make_cfg(tmp_path, overrides), "test", checkpoint_metadata(members[0]["best_checkpoint"])
    )
    right = total = 0
    with torch.no_grad():
        for batch in dm.test_dataloader():
            args = batch["tokens"], batch["lengths"], batch["chars"]
            probs = sum(t.model(*args).softmax(-1) for t in tasks) / len(tasks)
            right += int((probs.argmax(-1) == batch["label"]).sum())
            total += len(batch["label"])
    assert metrics["test/acc"] == pytest.approx(right / total)
    assert summary["metrics"] == metrics
    checkpoints = ",".join(m["best_checkpoint"] for m in members)
    evaluated = evaluate(make_cfg(tmp_path, [f"ckpt_path=[{checkpoints}]"], name="evaluate"))
    assert evaluated["test/acc"] == pytest.approx(metrics["test/acc"])
    mean_acc = sum(m["metrics"]["test/acc"] for m in members) / 2
    assert summary["member_test_mean"]["test/acc"] == pytest.approx(mean_acc)


def test_evaluate_reads_the_checkpoints_split_and_lookup_from_any_folder(tmp_path, monkeypatch):
    sms = tmp_path / "data" / "sms.tsv"
    sms.parent.mkdir()
    shutil.copy(BUILTIN_DIR / "spam_demo.tsv", sms)
    monkeypatch.chdir(tmp_path)
    overrides = ["task=cls", *TINY, "data.builtin=false", "data.path=data/sms.tsv", "seed=3",
                 "data.zero_digits=true", "trainer.max_epochs=1", "trainer.limit_train_batches=3",
                 "trainer.enable_progress_bar=false"]  # fmt: skip
    metrics = train(make_cfg(tmp_path / "run", overrides))
    best = tmp_path / "run" / "checkpoints" / "best.ckpt"
    monkeypatch.chdir(tmp_path / "run")  # where data/sms.tsv is not
    cfg = make_cfg(tmp_path / "eval", [f"ckpt_path={best}"], "evaluate")  # its split, seed 3
    assert evaluate(cfg)["test/acc"] == pytest.approx(metrics["test/acc"])
    # Another split (it would hold training messages) or another lookup (the vocabulary
    # was built with digits read as 0) is an error naming the settings.
    task = load_task(best)
    with pytest.raises(ValueError, match=r"data.seed=3 \(this run: 4\), data.zero_digits=True"):
        evaluation_data(task, {"zero_digits": False, "seed": 4}, str(best))
    assert evaluation_data(task, {"eval_batch_size": 3}, str(best))["eval_batch_size"] == 3
    moved = tmp_path / "moved.tsv"
    sms.rename(moved)
    with pytest.raises(FileNotFoundError, match="sms.tsv"):
        evaluate(make_cfg(tmp_path / "eval", [f"ckpt_path={best}"], "evaluate"))
    cfg = make_cfg(tmp_path / "eval", [f"ckpt_path={best}", f"data.path={moved}"], "evaluate")
    assert evaluate(cfg)["test/acc"] == pytest.approx(metrics["test/acc"])


def test_an_ensemble_resumes_in_its_folder_and_not_from_ckpt_path(tmp_path):
    overrides = ["task=cls", *TINY, "trainer.max_epochs=2", "trainer.limit_train_batches=2",
                 "trainer.enable_progress_bar=false", "ensemble_size=2"]  # fmt: skip
    first = train_ensemble(make_cfg(tmp_path, overrides))
    best = [tmp_path / f"seed{s}" / "checkpoints" / "best.ckpt" for s in (42, 43)]
    saved = [path.stat().st_mtime_ns for path in best]
    (tmp_path / "seed43" / "metrics.json").unlink()  # seed 43 stopped after its last.ckpt
    again = train_ensemble(make_cfg(tmp_path, overrides))
    # Neither member trained again: seed 42 was kept, seed 43 resumed at its last epoch.
    assert [path.stat().st_mtime_ns for path in best] == saved
    assert (tmp_path / "seed43" / "metrics.json").is_file()
    assert again == pytest.approx(first)
    shown = [o.replace("progress_bar=false", "progress_bar=true") for o in overrides]
    assert train_ensemble(make_cfg(tmp_path, shown)) == pytest.approx(first)  # a free setting
    longer = [o.replace("max_epochs=2", "max_epochs=3") for o in overrides]
    with pytest.raises(ValueError, match=r"seed42 holds a member trained with trainer.max_epochs=2 "
                       r"\(this run: 3\)"):  # fmt: skip
        train_ensemble(make_cfg(tmp_path, longer))
    with pytest.raises(ValueError, match="an ensemble resumes when run again in its own folder"):
        train_ensemble(make_cfg(tmp_path, [*overrides, "ckpt_path=last.ckpt"]))
    with pytest.raises(ValueError, match=r"trainer=debug \(fast_dev_run\) writes none"):
        train_ensemble(
            make_cfg(tmp_path / "debug", ["task=cls", "ensemble_size=2", "trainer=debug"])
        )
    with pytest.raises(ValueError, match="not language models"):  # before any training
        train_ensemble(make_cfg(tmp_path / "lm", ["task=lm", "ensemble_size=2"]))


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_a_cell_config_is_the_one_model_config_with_its_cell(tmp_path, cell):
    named = make_cfg(tmp_path, ["task=cls", f"model={cell}"]).model
    chosen = make_cfg(tmp_path, ["task=cls", "model=rnn", f"model.cell={cell}"]).model
    assert named == chosen and named.cell == cell


@pytest.mark.parametrize(("task", "recorded"), [("lm", True), ("cls", False), ("pos", False)])
def test_each_task_config_chooses_cuda_graphs_and_the_run_applies_it(tmp_path, task, recorded):
    from rnn_tasks.nn import cuda_graphs, set_cuda_graphs

    cfg = make_cfg(tmp_path, [f"task={task}", *(LM_TINY if task == "lm" else TINY)])
    assert cfg.cuda_graphs is recorded  # BPTT windows repeat their shape; sentences do not
    set_cuda_graphs(not recorded)
    try:
        with open_dict(cfg):
            cfg.trainer.fast_dev_run = True
        train(cfg)
        assert cuda_graphs() is recorded
    finally:
        set_cuda_graphs(True)
