"""Batched prediction against one text at a time, on real data and experiment-sized models.

The tagger of `experiment=ud_pos` on the EWT dev sentences and the classifier of
`experiment=sms_spam` on the SMS messages, each predicted twice: one call per text (a loop
over `task.predict(text)`) and one batched call (`task.predict(texts)`, which groups texts
by length; what `scripts/predict.py input=FILE` runs). Speed does not depend on the
weights, so the models are untrained. Both ways must give the same predictions (checked).

    python benchmarks/predict_speed.py                  # 1 and 2 threads
    python benchmarks/predict_speed.py --threads 1 --limit 300 --out /tmp/p.json

It prints a table and writes JSON (default `results/predict_speed.json`) with the CPU model.
A measurement, not a test: it asserts nothing but the equality of the predictions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from rnn_tasks.runtime import cpu_model  # noqa: E402
from rnn_tasks.train import build_datamodule, build_task, git_revision  # noqa: E402

CASES = {  # name: (experiment, split, the texts of a split's records)
    "tagging, EWT dev": ("ud_pos", "validation", lambda r: r["tokens"]),
    "spam, SMS messages": ("sms_spam", "validation", lambda r: r["text"]),
}


def build(experiment: str, split: str, texts_of):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", "~logger"])
    with open_dict(cfg):
        cfg.data.path = str(ROOT / cfg.data.path)
    datamodule = build_datamodule(cfg, "fit")
    task = build_task(cfg, datamodule).eval()
    return task, [texts_of(r) for r in datamodule._records[split]]


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--limit", type=int, help="only the first N texts of each split")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "predict_speed.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for name, (experiment, split, texts_of) in CASES.items():
        task, texts = build(experiment, split, texts_of)
        texts = texts[: args.limit]
        words = [t if isinstance(t, list) else task.pipeline.words(t) for t in texts]
        tokens = sum(len(w) for w in words)
        for threads in args.threads:
            torch.set_num_threads(threads)
            loop_s, one_by_one = timed(lambda: [task.predict([t])[0] for t in texts])  # noqa: B023
            batch_s, batched = timed(lambda: task.predict(texts))  # noqa: B023
            same = labels(one_by_one) == labels(batched)
            row = {"case": name, "experiment": experiment, "threads": threads,
                   "texts": len(texts), "tokens": tokens,
                   "loop_texts_per_s": len(texts) / loop_s, "loop_tokens_per_s": tokens / loop_s,
                   "batched_texts_per_s": len(texts) / batch_s,
                   "batched_tokens_per_s": tokens / batch_s, "speedup": loop_s / batch_s,
                   "same_predictions": same}  # fmt: skip
            rows.append(row)
            print(f"{name:20} {threads} thread(s): loop {row['loop_texts_per_s']:8.1f} texts/s"
                  f" ({row['loop_tokens_per_s']:8.0f} tokens/s); batched "
                  f"{row['batched_texts_per_s']:8.1f} texts/s ({row['batched_tokens_per_s']:8.0f}"
                  f" tokens/s): x{row['speedup']:.1f}; same predictions: {same}")  # fmt: skip
    summary = {"command": " ".join(["python benchmarks/predict_speed.py", *sys.argv[1:]]),
               "cpu": cpu_model(), "torch": torch.__version__, "git_revision": git_revision(),
               "rows": rows}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"written to {args.out}")


def labels(predictions: list) -> list:
    """The predicted labels or tags, without their probabilities (float rounding differs)."""
    return [[t for _, t in p] if isinstance(p, list) else p[0] for p in predictions]


if __name__ == "__main__":
    main()
