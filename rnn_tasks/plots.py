"""The figures of a run, drawn from the files it leaves: no checkpoint, no torch.

In a run folder (`python scripts/plot.py RUN_DIR` redraws them):

- `learning_curves.png`: the loss and the task's metric (lm: perplexity; pos: accuracy;
  cls: accuracy and F1) per epoch, training and validation, from `metrics.csv`, with the
  tested (best) model's test value as a dotted line.
- `confusion_matrix.png` (pos, cls): the test confusion matrix, each row normalised by its
  true label's count, from `confusion.json` (`rnn_tasks.figures` writes it).
- `tag_accuracy.png` (pos): test accuracy per tag with its count, and on words seen and
  unseen in training.

In a Hydra multirun folder (numbered run folders): `sweep_curves.png`, every run's curves
overlaid, labelled with the settings the sweep varied.

Figures are matplotlib `Figure`s saved through the Agg canvas, never pyplot: no display is
needed and no global backend changes under a notebook that imports this module.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, PercentFormatter

from .settings import flatten

DPI = 100
# The curves drawn, in panel order, when metrics.csv has them: metric -> panel title.
CURVES = {"loss": "loss", "ppl": "perplexity", "acc": "accuracy", "f1": "F1 (positive class)"}
STAGES = {"train": "training", "val": "validation"}

History = dict[str, dict[int, float]]  # "val/loss" -> {epoch: value}


# -- reading ---------------------------------------------------------------------------------


def read_history(path: str | Path) -> History:
    """`metrics.csv` (Lightning's CSVLogger) as {"val/loss": {epoch: value}, ...}.

    Rows are sparse: each holds the metrics logged at one step. A metric logged at several
    steps of an epoch (`train/loss` every `log_every_n_steps`) is averaged over that epoch.
    Rows without an epoch (the learning rate) are skipped.
    """
    values: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if not row.get("epoch"):
                continue
            epoch = int(float(row["epoch"]))
            for key, value in row.items():
                if value and key.split("/")[0] in ("train", "val", "test"):
                    values[key][epoch].append(float(value))
    return {k: {e: sum(v) / len(v) for e, v in sorted(by.items())} for k, by in values.items()}


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def curves_in(history: History) -> list[str]:
    """The metrics of `CURVES` logged for training or validation."""
    return [m for m in CURVES if any(f"{s}/{m}" in history for s in STAGES)]


# -- drawing ---------------------------------------------------------------------------------


def learning_curves(history: History, title: str = "") -> Figure:
    """One panel per metric of `CURVES` in `history`: training and validation per epoch
    (counted from 1), and the test value (of the best checkpoint) as a dotted line."""
    metrics = curves_in(history)
    fig = Figure(figsize=(4 * len(metrics), 3.2), layout="constrained")
    for ax, metric in zip(fig.subplots(1, len(metrics), squeeze=False)[0], metrics, strict=True):
        for stage, name in STAGES.items():
            by_epoch = history.get(f"{stage}/{metric}", {})
            if by_epoch:
                x = [e + 1 for e in by_epoch]
                ax.plot(x, list(by_epoch.values()), marker="o", markersize=3, label=name)
        test = history.get(f"test/{metric}")
        if test:
            ax.axhline(list(test.values())[-1], color="0.3", linestyle=":", label="test (best)")
        _style_curve_axes(ax, metric)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig


def _style_curve_axes(ax, metric: str) -> None:
    ax.set_title(CURVES[metric])
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if metric == "ppl":  # from hundreds in the first epoch down to tens: ratios matter
        ax.set_yscale("log")
        ax.yaxis.set_minor_locator(LogLocator(subs=(2, 3, 5)))  # 100, 200, 300, 500, 1000
        for axis_format in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis_format(FuncFormatter(lambda value, _: f"{value:g}"))


def confusion_matrix(confusion: dict, title: str = "") -> Figure:
    """The matrix of `confusion` ("labels", "matrix": rows the true label, columns the
    prediction), each row normalised by the true label's count, annotated with percentages
    (and the counts, for a few labels)."""
    labels, counts = confusion["labels"], np.asarray(confusion["matrix"], dtype=float)
    support = counts.sum(1)
    shares = np.divide(
        counts, support[:, None], out=np.zeros_like(counts), where=support[:, None] > 0
    )
    C = len(labels)
    side = min(max(3.5, 0.42 * C + 2), 11)
    fig = Figure(figsize=(side + 1, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(
        image, ax=ax, shrink=0.8, format=PercentFormatter(1.0), label="share of true label"
    )
    few = C <= 6
    for i in range(C):
        for j in range(C):
            if counts[i, j] == 0 and i != j and not few:
                continue  # keeps 17 x 17 readable: the blanks are the zeros
            text = f"{shares[i, j]:.0%}" + (f"\n{int(counts[i, j])}" if few else "")
            color = "white" if shares[i, j] > 0.6 else "black"
            size = "medium" if few else 6.5
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=size)
    ax.set_xticks(range(C), labels, rotation=90 if C > 6 else 0)
    ax.set_yticks(range(C), [f"{name} ({int(n)})" for name, n in zip(labels, support, strict=True)])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (test count)")
    total = counts.sum()
    accuracy = np.trace(counts) / total if total else math.nan
    ax.set_title(f"{title}test confusion: accuracy {accuracy:.1%} of {int(total)}")
    return fig


def tag_accuracy(confusion: dict, title: str = "") -> Figure:
    """Test accuracy per tag (most frequent first, each bar labelled with its count), and on
    words seen and unseen in training (`confusion["words"]`)."""
    counts = np.asarray(confusion["matrix"])
    support, correct = counts.sum(1), np.diag(counts)
    order = [i for i in np.argsort(-support, kind="stable") if support[i] > 0]
    tags = [confusion["labels"][i] for i in order]
    fig = Figure(figsize=(max(6, 0.45 * len(tags) + 3.5), 3.8), layout="constrained")
    per_tag, words = fig.subplots(1, 2, width_ratios=[max(len(tags), 4), 2.6], sharey=True)
    bars = per_tag.bar(tags, correct[order] / support[order], color="tab:blue")
    per_tag.bar_label(bars, [f"{n}" for n in support[order]], fontsize=7, padding=1)
    per_tag.axhline(correct.sum() / support.sum(), color="0.3", linestyle=":", label="all words")
    per_tag.set_title(f"{title}test accuracy per tag (above each bar: its words)")
    per_tag.set_xlabel("tag")
    per_tag.set_ylabel("accuracy")
    per_tag.set_ylim(0, 1.1)
    per_tag.yaxis.set_major_formatter(PercentFormatter(1.0))
    per_tag.tick_params(axis="x", labelrotation=90 if len(tags) > 6 else 0)
    per_tag.legend(fontsize="small", loc="upper right")
    parts = confusion.get("words", {})
    names = [p for p in ("seen", "unseen") if parts.get(p, {}).get("total")]
    shares = [parts[p]["correct"] / parts[p]["total"] for p in names]
    bars = words.bar(names, shares, color=["tab:green", "tab:orange"][: len(names)])
    notes = [f"{s:.1%}\nof {parts[p]['total']}" for p, s in zip(names, shares, strict=True)]
    words.bar_label(bars, notes, fontsize=7, padding=1)
    words.set_title("seen in training?")
    words.set_xlabel("test words")
    return fig


def sweep_curves(histories: dict[str, History], title: str = "") -> Figure:
    """The runs of a sweep overlaid, one colour each (keyed by their legend label):
    validation solid, training dashed, one panel per metric of `CURVES`."""
    metrics = list(dict.fromkeys(m for h in histories.values() for m in curves_in(h)))
    fig = Figure(figsize=(4 * len(metrics), 3.6), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    colors = [f"C{i % 10}" for i in range(len(histories))]
    for ax, metric in zip(axes, metrics, strict=True):
        for color, (label, history) in zip(colors, histories.items(), strict=True):
            for stage, style in (("val", "-"), ("train", "--")):
                by_epoch = history.get(f"{stage}/{metric}", {})
                if by_epoch:
                    first = stage == "val" or f"val/{metric}" not in history  # in the legend
                    ax.plot(
                        [e + 1 for e in by_epoch],
                        list(by_epoch.values()),
                        style,
                        color=color,
                        marker="o",  # a single training loss of a short epoch shows too
                        markersize=3,
                        alpha=1 if stage == "val" else 0.5,
                        label=label if first else None,
                    )
        _style_curve_axes(ax, metric)
    handles, labels = axes[0].get_legend_handles_labels()
    legend = dict(loc="outside lower center", ncols=min(len(labels), 3), fontsize="small")
    fig.legend(handles, labels, **legend)
    fig.suptitle(f"{title}validation solid, training dashed", fontsize="medium")
    return fig


def save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)  # render through Agg: no display, no pyplot state
    fig.savefig(path, dpi=DPI)
    return path


# -- folders ---------------------------------------------------------------------------------


def write_run_figures(run_dir: str | Path) -> list[Path]:
    """Draws a run folder's figures from its metrics.csv, metrics.json and confusion.json
    (those of them it has); returns the paths written."""
    run_dir = Path(run_dir)
    summary = read_json(run_dir / "metrics.json") or {}
    title = summary.get("task", "run")
    if summary.get("status", "finished") != "finished":
        title += f" ({summary['status']})"
    where = Path(*run_dir.resolve().parts[-2:])  # outputs/pos/<time> -> pos/<time>
    written = []
    if (run_dir / "metrics.csv").is_file():
        history = read_history(run_dir / "metrics.csv")
        if curves_in(history):
            fig = learning_curves(history, f"{title}: {where}")
            written.append(save(fig, run_dir / "learning_curves.png"))
    confusion = read_json(run_dir / "confusion.json")
    if confusion:
        written.append(
            save(confusion_matrix(confusion, f"{title}: "), run_dir / "confusion_matrix.png")
        )
        if "words" in confusion:  # tagging
            written.append(
                save(tag_accuracy(confusion, f"{title}: "), run_dir / "tag_accuracy.png")
            )
    return written


def sweep_runs(folder: Path) -> list[Path]:
    """The run folders of a Hydra multirun folder (`0_cls/`, `1_cls/`, ...), in job order."""
    runs = [p for p in folder.iterdir() if (p / "metrics.csv").is_file()]

    def job(run: Path) -> tuple[float, str]:
        number = run.name.split("_")[0]
        return (int(number) if number.isdigit() else math.inf, run.name)

    return sorted(runs, key=job)


def overrides_of(run_dir: Path) -> dict[str, str]:
    """A run's command-line overrides (`.hydra/overrides.yaml`) as {key: value}."""
    lines = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) or []
    pairs = (line.lstrip("+").partition("=") for line in lines)
    return {key.lstrip("~"): value if sep else "(removed)" for key, sep, value in pairs}


def config_of(run_dir: Path) -> dict[str, str]:
    """A run's whole config (from metrics.json) as {dotted key: value}."""
    config = flatten((read_json(run_dir / "metrics.json") or {}).get("config") or {})
    config.pop("output_dir", None)  # every run's own folder: not a swept value
    return {key: str(value) for key, value in config.items()}


def swept_values(runs: list[Path]) -> dict[Path, str]:
    """Each run's legend label: the settings that differ between `runs` ("task.lr=0.01,
    model=gru"), from their overrides when every run has them, else from their configs."""
    overrides = all((run / ".hydra" / "overrides.yaml").is_file() for run in runs)
    settings = {run: overrides_of(run) if overrides else config_of(run) for run in runs}
    keys = sorted(set().union(*settings.values()))
    varied = [k for k in keys if len({s.get(k) for s in settings.values()}) > 1]
    return {
        run: ", ".join(f"{k}={s.get(k, '(default)')}" for k in varied) or run.name
        for run, s in settings.items()
    }


def write_sweep_figures(folder: str | Path) -> list[Path]:
    """Draws `sweep_curves.png` in a Hydra multirun folder; returns the paths written."""
    folder = Path(folder)
    runs = sweep_runs(folder)
    if not runs:
        return []
    labels = swept_values(runs)
    histories = {labels[run]: read_history(run / "metrics.csv") for run in runs}
    fig = sweep_curves(histories, f"{folder}: {len(runs)} runs; ")
    return [save(fig, folder / "sweep_curves.png")]


def write_figures_of(folder: str | Path) -> list[Path]:
    """A run folder's figures, or a multirun folder's sweep figure."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    if (folder / "metrics.csv").is_file() or (folder / "metrics.json").is_file():
        return write_run_figures(folder)
    if sweep_runs(folder):
        return write_sweep_figures(folder)
    raise FileNotFoundError(
        f"{folder} holds no metrics.csv or metrics.json, nor run folders that do: give a run "
        f"folder (outputs/<task>/<time>/) or a multirun folder (multirun/<time>/)"
    )
