"""The accuracy and speed cost of bf16 and int8 inference on the real tasks' checkpoints.

Each checkpoint is evaluated on a split (default: test, the data config it stores) at
float32, bf16 and int8 (`rnn_tasks.nn.reduce_precision(task, p, inplace=True)` on a fresh
load, then `rnn_tasks.evaluate.run_split`, as `scripts/evaluate.py precision=p` runs it).
Each evaluation is timed (wall seconds, data loading and weight preparation included), and
the task's headline metrics and their change against float32 are reported:

    lm    ppl                          perplexity, exp(total NLL / total tokens)
    pos   acc, acc_seen, acc_unseen    tagging accuracy, on words seen / unseen in training
    cls   acc, f1, precision, recall   f1, precision and recall of the positive class (spam)

    python benchmarks/reduced_precision.py --ckpt A.ckpt B.ckpt --threads 1
    python benchmarks/reduced_precision.py --ckpt lm.ckpt --limit bf16:lm=60

`--limit PRECISION:TASK=N` evaluates that precision on the first N batches of the split
only, for a task where it would take too long (bf16 on a CPU without bfloat16 instructions,
where torch emulates it); float32 is then evaluated on the same N batches too, and that
row, not the whole split's, is the reference for the limited row's change. Each row says
which batches it saw.

It prints a table and writes JSON (default `results/reduced_precision.json`) with the
command, the CPU model, torch's version, the threads and the date. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import lightning as L  # noqa: E402
import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from rnn_tasks.evaluate import evaluation_data, load_checkpoints, run_split  # noqa: E402
from rnn_tasks.nn import reduce_precision  # noqa: E402
from rnn_tasks.nn.matmul import bf16_native  # noqa: E402
from rnn_tasks.nn.precision import PRECISIONS  # noqa: E402
from rnn_tasks.runtime import cpu_model, set_up_process  # noqa: E402
from rnn_tasks.tasks import ClassificationTask, LanguageModelTask, TaggingTask  # noqa: E402
from rnn_tasks.train import data_metadata, git_revision  # noqa: E402

# The metrics each task logs that the table reports (without the split's prefix).
HEADLINE = {
    "lm": ("ppl", "loss"),
    "pos": ("acc", "acc_seen", "acc_unseen"),
    "cls": ("acc", "f1", "precision", "recall"),
}
PREFIX = {"test": "test", "validation": "val"}


def task_name(task) -> str:
    for cls, name in ((LanguageModelTask, "lm"), (TaggingTask, "pos"), (ClassificationTask, "cls")):
        if isinstance(task, cls):
            return name
    raise ValueError(f"not a task this benchmark knows: {type(task).__name__}")


def parse_limits(specs: list[str]) -> dict[tuple[str, str], int]:
    """`["bf16:lm=60"]` -> `{("bf16", "lm"): 60}`."""
    limits = {}
    for spec in specs:
        try:
            key, n = spec.split("=")
            precision, task = key.split(":")
            limits[precision, task] = int(n)
        except ValueError:
            raise SystemExit(f"--limit takes PRECISION:TASK=N (bf16:lm=60), got {spec!r}") from None
        if precision not in PRECISIONS or task not in HEADLINE or limits[precision, task] < 1:
            raise SystemExit(f"--limit {spec!r}: precision in {PRECISIONS}, task in "
                             f"{tuple(HEADLINE)}, N >= 1")  # fmt: skip
    return limits


def datamodule_for(task, ckpt: str):
    """The data the checkpoint was trained with, as `rnn_tasks.evaluate.evaluate` builds it."""
    datamodule = instantiate(OmegaConf.create(evaluation_data(task, {}, ckpt)))
    datamodule.adopt(data_metadata(task.hparams))
    return datamodule


def evaluate(ckpt: str, precision: str, split: str, batches: int | None) -> tuple[dict, float]:
    """`(metrics, wall seconds)` of the checkpoint at `precision` on `split`, or on its
    first `batches` batches."""
    start = time.perf_counter()
    task = reduce_precision(load_checkpoints([ckpt]), precision, inplace=True)
    datamodule = datamodule_for(task, ckpt)
    if batches is None:
        metrics = run_split(task, datamodule, split)
    else:  # run_split's Trainer, with a limit on the batches
        trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, limit_test_batches=batches,
                            limit_val_batches=batches)  # fmt: skip
        run = trainer.test if split == "test" else trainer.validate
        results = run(task, datamodule=datamodule, verbose=False)
        metrics = {k: float(v) for k, v in results[0].items()}
    return metrics, time.perf_counter() - start


def headline(metrics: dict, name: str, split: str) -> dict:
    prefix = PREFIX[split]
    return {m: metrics[f"{prefix}/{m}"] for m in HEADLINE[name] if f"{prefix}/{m}" in metrics}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", nargs="+", required=True, help="checkpoints of scripts/train.py")
    parser.add_argument("--precisions", default="float32,bf16,int8")
    parser.add_argument("--split", choices=tuple(PREFIX), default="test")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", action="append", default=[], metavar="PRECISION:TASK=N",
                        help="evaluate PRECISION on the first N batches only for TASK")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "reduced_precision.json")
    args = parser.parse_args(argv)
    precisions = [p for p in PRECISIONS if p in ["float32", *args.precisions.split(",")]]
    limits = parse_limits(args.limit)
    revision = git_revision()  # now: the code this process imported, not a later commit
    set_up_process(args.threads)
    for logger in ("lightning.pytorch", "lightning.fabric"):  # the Trainer's banner, per run
        logging.getLogger(logger).setLevel(logging.WARNING)
    torch.manual_seed(0)
    rows = []
    for ckpt in args.ckpt:
        name = task_name(load_checkpoints([ckpt]))
        limited = {limits[p, name] for p in precisions if (p, name) in limits}
        runs = [(p, limits.get((p, name))) for p in precisions]
        runs += [("float32", n) for n in sorted(limited)]  # the references of limited rows
        reference = {}
        for precision, batches in sorted(runs, key=lambda r: r[0] != "float32"):
            metrics, seconds = evaluate(ckpt, precision, args.split, batches)
            values = headline(metrics, name, args.split)
            if precision == "float32":
                reference[batches] = (values, seconds)
            ref_values, ref_seconds = reference[batches]
            row = {"ckpt": ckpt, "task": name, "precision": precision, "split": args.split,
                   "batches": "all" if batches is None else f"first {batches}",
                   "seconds": round(seconds, 2),
                   "speedup_vs_float32": round(ref_seconds / seconds, 3),
                   "metrics": values,
                   "change_vs_float32": {k: v - ref_values[k] for k, v in values.items()},
                   "all_metrics": metrics}  # fmt: skip
            rows.append(row)
            print(format_row(row), flush=True)
    summary = {
        "command": " ".join(["python benchmarks/reduced_precision.py", *sys.argv[1:]]),
        "cpu": cpu_model(),
        "bf16_native": bf16_native(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git_revision": revision,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{summary['cpu']}, {summary['threads']} thread(s), torch {summary['torch']}; "
          f"bfloat16 instructions: {summary['bf16_native']}; written to {args.out}")  # fmt: skip
    return summary


def format_row(row: dict) -> str:
    values = "  ".join(
        f"{k} {v:.4f} ({row['change_vs_float32'][k]:+.4f})" for k, v in row["metrics"].items()
    )
    return (f"{row['task']:3} {row['precision']:7} {row['batches']:>9}  {row['seconds']:7.1f} s "
            f"(x{row['speedup_vs_float32']:.2f})  {values}")  # fmt: skip


if __name__ == "__main__":
    main()
