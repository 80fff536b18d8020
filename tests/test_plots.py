"""The figures a run leaves (rnn_tasks.figures, rnn_tasks.plots, scripts/plot.py) and the
check for an optional logger's package (rnn_tasks.loggers)."""

import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import confusion_matrix

from rnn_tasks import figures, plots
from rnn_tasks.loggers import check_logger_available
from rnn_tasks.tasks import load_task
from rnn_tasks.train import build_datamodule, checkpoint_metadata, train
from tests.test_train import LM_TINY, make_cfg

ROOT = Path(__file__).parents[1]
# The CSV logger on (the default): figures are drawn from metrics.csv. train/loss_step is
# logged at every step, to check train/loss (the epoch's mean) against. The test split is
# whole: the confusion counts it all, and must agree with the run's test metrics.
SHORT = ["model.embedding_dim=16", "model.hidden_size=16", "trainer.max_epochs=2",
         "trainer.limit_train_batches=4", "trainer.log_every_n_steps=1",
         "trainer.limit_val_batches=2", "trainer.enable_progress_bar=false"]  # fmt: skip
TASKS = {
    "lm": ["task=lm", *LM_TINY, "data.max_lines=100"],
    "pos": ["task=pos"],
    "cls": ["task=cls"],
}
FIGURES = {
    "lm": {"learning_curves.png"},
    "pos": {"learning_curves.png", "confusion_matrix.png", "tag_accuracy.png"},
    "cls": {"learning_curves.png", "confusion_matrix.png"},
}
TITLES = {
    "lm": ["loss", "perplexity"],
    "pos": ["loss", "accuracy"],
    "cls": ["loss", "accuracy", "F1 (positive class)"],
}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One short run of each task: {task: (cfg, run folder)}."""
    done = {}
    for name, overrides in TASKS.items():
        folder = tmp_path_factory.mktemp(name)
        cfg = make_cfg(folder, [*overrides, *SHORT])
        train(cfg)
        done[name] = cfg, folder
    return done


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 10_000, path
    with Image.open(path) as image:
        image.verify()  # a complete, uncorrupted PNG
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) >= 250


@pytest.mark.parametrize("name", TASKS)
def test_a_finished_run_draws_its_figures(runs, name):
    _, folder = runs[name]
    assert {p.name for p in folder.glob("*.png")} == FIGURES[name]
    for png in FIGURES[name]:
        assert_png(folder / png)
    assert (folder / "confusion.json").is_file() == (name != "lm")


@pytest.mark.parametrize("name", TASKS)
def test_learning_curves_show_the_metrics_per_epoch(runs, name):
    _, folder = runs[name]
    fig = plots.learning_curves(plots.read_history(folder / "metrics.csv"))
    assert [ax.get_title() for ax in fig.axes] == TITLES[name]
    assert all(ax.get_xlabel() == "epoch" for ax in fig.axes)
    # The reference: pandas' mean per epoch of the sparse CSV rows.
    frame = pd.read_csv(folder / "metrics.csv")
    loss = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert set(loss) == {"training", "validation", "test (best)"}
    for label, key in (("training", "train/loss"), ("validation", "val/loss")):
        expected = frame.dropna(subset=[key]).groupby("epoch")[key].mean()
        np.testing.assert_allclose(loss[label].get_xdata(), expected.index + 1)  # from 1
        np.testing.assert_allclose(loss[label].get_ydata(), expected.to_numpy(), rtol=1e-6)
    assert loss["test (best)"].get_ydata()[0] == pytest.approx(frame["test/loss"].dropna().item())


def test_the_training_curve_is_each_epochs_exact_mean_loss(runs):
    # Not Lightning's sample of one batch every log_every_n_steps: the mean over every
    # batch (here four full ones, so the plain mean of their losses).
    frame = pd.read_csv(runs["cls"][1] / "metrics.csv")
    steps = frame.dropna(subset=["train/loss_step"]).groupby("epoch")["train/loss_step"]
    assert (steps.count() == 4).all()
    epochs = frame.dropna(subset=["train/loss"]).set_index("epoch")["train/loss"]
    np.testing.assert_allclose(epochs.to_numpy(), steps.mean().to_numpy(), rtol=1e-6)


def test_the_tagger_logs_its_training_accuracy_per_epoch(runs):
    frame = pd.read_csv(runs["pos"][1] / "metrics.csv")
    assert frame.dropna(subset=["train/acc"])["epoch"].tolist() == [0, 1]
    fig = plots.learning_curves(plots.read_history(runs["pos"][1] / "metrics.csv"))
    assert {line.get_label() for line in fig.axes[1].get_lines()} >= {"training", "validation"}


def predictions_of_the_best_checkpoint(cfg, folder):
    """Gold and predicted ids over the test split, from best.ckpt loaded afresh."""
    best = folder / "checkpoints" / "best.ckpt"
    task, datamodule = load_task(best), build_datamodule(cfg, "test", checkpoint_metadata(best))
    gold, predicted = [], []
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            logits = task.model(batch["tokens"], batch["lengths"], batch.get("chars"))
            target = batch.get("tags", batch.get("label"))
            keep = target != -100
            gold += target[keep].tolist()
            predicted += logits.argmax(-1)[keep].tolist()
    return gold, predicted


@pytest.mark.parametrize("name", ["pos", "cls"])
def test_confusion_json_counts_the_tested_models_predictions(runs, name):
    cfg, folder = runs[name]

    def no_nan(value):
        raise AssertionError(f"not strict JSON: {value}")

    confusion = json.loads((folder / "confusion.json").read_text(), parse_constant=no_nan)
    matrix = np.array(confusion["matrix"])
    labels = confusion["labels"]
    gold, predicted = predictions_of_the_best_checkpoint(cfg, folder)
    reference = confusion_matrix(gold, predicted, labels=range(len(labels)))
    np.testing.assert_array_equal(matrix, reference)
    assert matrix.sum(1).tolist() == np.bincount(gold, minlength=len(labels)).tolist()
    # ... and agrees with what the run's test (torchmetrics, through Lightning) reported.
    tested = json.loads((folder / "metrics.json").read_text())["metrics"]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(tested["test/acc"], abs=1e-6)
    if name == "pos":
        for i, tag in enumerate(labels):
            if matrix[i].sum():
                assert matrix[i, i] / matrix[i].sum() == pytest.approx(tested[f"test/acc_{tag}"])
        words = confusion["words"]
        assert words["seen"]["total"] + words["unseen"]["total"] == matrix.sum()
        for part in ("seen", "unseen"):
            share = words[part]["correct"] / words[part]["total"]
            assert share == pytest.approx(tested[f"test/acc_{part}"], abs=1e-6)


def test_confusion_and_tag_figures_show_labels_counts_and_shares(runs):
    _, folder = runs["pos"]
    confusion = json.loads((folder / "confusion.json").read_text())
    matrix, tags = np.array(confusion["matrix"]), confusion["labels"]
    fig = plots.confusion_matrix(confusion)
    image, colorbar = fig.axes
    assert (image.get_xlabel(), image.get_ylabel()) == ("predicted", "true (test count)")
    assert [t.get_text() for t in image.get_xticklabels()] == tags
    shares = image.get_images()[0].get_array()
    support = matrix.sum(1)
    np.testing.assert_allclose(shares[support > 0].sum(1), 1)  # normalised by true label
    assert f"accuracy {np.trace(matrix) / matrix.sum():.1%}" in image.get_title()

    fig = plots.tag_accuracy(confusion)
    per_tag, words = fig.axes
    order = np.argsort(-support, kind="stable")[: (support > 0).sum()]
    assert [t.get_text() for t in per_tag.get_xticklabels()] == [tags[i] for i in order]
    heights = [bar.get_height() for bar in per_tag.patches]
    np.testing.assert_allclose(heights, np.diag(matrix)[order] / support[order])
    assert [t.get_text() for t in per_tag.texts] == [str(n) for n in support[order]]
    seen = confusion["words"]["seen"]
    assert words.patches[0].get_height() == pytest.approx(seen["correct"] / seen["total"])
    assert words.texts[0].get_text().endswith(f"of {seen['total']}")


def fake_sweep(runs, folder: Path) -> Path:
    """A multirun folder of two copies of the cls run, swept over task.lr."""
    _, run = runs["cls"]
    for number, lr in ((0, "0.001"), (1, "0.01")):
        job = folder / f"{number}_cls"
        (job / ".hydra").mkdir(parents=True)
        shutil.copy(run / "metrics.csv", job / "metrics.csv")
        summary = json.loads((run / "metrics.json").read_text())
        summary["config"]["output_dir"] = str(job)  # each run's own: never a swept value
        (job / "metrics.json").write_text(json.dumps(summary))
        overrides = ["task=cls", f"task.lr={lr}", "model.hidden_size=16"]
        (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    return folder


def test_the_swept_values_come_from_the_overrides_or_else_the_configs(runs, tmp_path):
    sweep = fake_sweep(runs, tmp_path)
    jobs = plots.sweep_runs(sweep)
    assert [j.name for j in jobs] == ["0_cls", "1_cls"]
    assert list(plots.swept_values(jobs).values()) == ["task.lr=0.001", "task.lr=0.01"]
    for job, size in zip(jobs, (16, 32), strict=True):  # no overrides.yaml: the configs differ
        shutil.rmtree(job / ".hydra")
        summary = json.loads((job / "metrics.json").read_text())
        summary["config"]["model"]["hidden_size"] = size
        (job / "metrics.json").write_text(json.dumps(summary))
    labels = list(plots.swept_values(jobs).values())
    assert labels == ["model.hidden_size=16", "model.hidden_size=32"]


def test_plot_script_redraws_a_run_without_its_checkpoint_and_a_sweep(runs, tmp_path):
    _, run = runs["pos"]
    copy = tmp_path / "pos"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints", "*.png"))
    sweep = fake_sweep(runs, tmp_path / "multirun")
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plot.py"), str(copy), str(sweep)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    expected = [copy / name for name in sorted(FIGURES["pos"])] + [sweep / "sweep_curves.png"]
    assert sorted(Path(line) for line in out.stdout.split()) == sorted(expected)
    for path in expected:
        assert_png(path)
    histories = {"lr=a": plots.read_history(copy / "metrics.csv"), "lr=b": {}}
    fig = plots.sweep_curves(histories)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["lr=a"]  # b: nothing drawn


def test_a_folder_without_metrics_is_refused_with_what_it_lacks(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} holds no metrics.csv"):
        plots.write_figures_of(tmp_path)


def short_cls_run(tmp_path, *extra):
    overrides = ["task=cls", *SHORT, "trainer.max_epochs=1"]
    return train(make_cfg(tmp_path, [*overrides, *extra]))


def test_a_failure_to_draw_warns_and_the_run_still_finishes(tmp_path, monkeypatch, caplog):
    def broken(run_dir):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(figures, "write_run_figures", broken)
    with caplog.at_level("WARNING", logger="rnn_tasks.figures"):
        metrics = short_cls_run(tmp_path)
    assert "test/acc" in metrics
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "finished"
    assert f"figures of {tmp_path} not drawn: RuntimeError: no fonts" in caplog.text


@pytest.mark.parametrize(
    ("extra", "drawn"),
    [(["test=false"], {"learning_curves.png"}), (["~logger"], set())],
    ids=["untested", "no-logger"],
)
def test_an_untested_run_has_no_confusion_and_one_without_a_log_no_figures(tmp_path, extra, drawn):
    short_cls_run(tmp_path, *extra)
    assert {p.name for p in tmp_path.glob("*.png")} == drawn
    assert not (tmp_path / "confusion.json").exists()


@pytest.mark.parametrize("logger", ["csv", "tensorboard", None])
def test_an_optional_loggers_package_is_checked(tmp_path, monkeypatch, logger):
    overrides = ["task=pos", f"logger={logger}" if logger else "~logger"]
    cfg = make_cfg(tmp_path, overrides)
    for module in ("tensorboard", "tensorboardX"):
        monkeypatch.setitem(sys.modules, module, None)  # `import tensorboard` fails
    if logger == "tensorboard":
        with pytest.raises(ValueError, match=r'pip install -e "\.\[tensorboard\]"'):
            check_logger_available(cfg)
        monkeypatch.setitem(sys.modules, "tensorboard", types.ModuleType("tensorboard"))
    check_logger_available(cfg)  # installed, or not needed: no error


def test_a_run_with_a_missing_logger_package_stops_before_training(tmp_path, monkeypatch):
    for module in ("tensorboard", "tensorboardX"):
        monkeypatch.setitem(sys.modules, module, None)
    cfg = make_cfg(tmp_path, ["task=pos", *SHORT, "logger=tensorboard"])
    with pytest.raises(ValueError, match=r"logger=tensorboard needs the tensorboard package"):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.json").exists()
