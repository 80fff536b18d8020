"""The language model's data at scale: a 100M-token corpus from start to training batches.

It writes PTB's training text repeated until the corpus has `--tokens` tokens (the
validation and test files as they are), then starts the LM data module on it, each start in
a fresh process, and measures:

- time to the first training batch, from the process's start: importing torch and
  `datasets` (about 4 s), `setup("fit")` (read, count, encode) and the loader's first
  window, from a cold cache and again from the cache the first start left;
- peak resident memory of the process (`ru_maxrss`: the data module and its loader, python
  and torch included);
- the loader's windows per second, against one training step of `experiment=ptb_lstm`'s
  model (2x350 LSTM, tied, B 20, T 35) on the same thread count: the loader's share of
  an epoch is loader time / (loader time + step time).

    python benchmarks/data_scale.py                        # Arrow and streaming, cold and cached
    python benchmarks/data_scale.py --code /tmp/old --label before --modes cold cached

`--code` runs the starts against another checkout (an older `rnn_tasks`, the "before"
figures; its data module must take `path`, `batch_size` and `bptt`). It prints a table and
writes JSON (default `results/data_scale.json`, one entry per label) with the command, the
CPU model, torch's version and the date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import torch  # noqa: E402

from rnn_tasks.runtime import cpu_model  # noqa: E402

# Runs in a fresh process (`python -c`), so its peak memory is its own.
START = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads({threads})
from rnn_tasks.data import LMDataModule
settings = {settings}
dm = LMDataModule(path={path!r}, batch_size=20, eval_batch_size=10, bptt=35, **settings)
dm.setup("fit")
setup_s = time.perf_counter() - t0
loader = iter(dm.train_dataloader())
batch = next(loader)
first_s = time.perf_counter() - t0
t1, n = time.perf_counter(), 0
for batch in loader:
    n += 1
    if n == {windows}:
        break
loader_s = (time.perf_counter() - t1) / n
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
print(json.dumps({{"setup_s": setup_s, "first_batch_s": first_s, "window_s": loader_s,
                   "peak_gib": peak, "vocab": len(dm.vocab)}}))
"""


def write_corpus(folder: Path, tokens: int) -> int:
    """PTB's training text repeated to `tokens` tokens (to that line's end); returns the count."""
    import treebank

    folder.mkdir(parents=True, exist_ok=True)
    train = treebank.penn["train"]
    per_copy = sum(len(line.split()) + 1 for line in train.splitlines() if line.strip())
    written = 0
    with open(folder / "ptb.train.txt", "w") as f:
        while written + per_copy <= tokens:
            f.write(train)
            written += per_copy
        for line in train.splitlines(keepends=True):  # the last copy cut at a line end
            if written >= tokens:
                break
            f.write(line)
            written += len(line.split()) + 1 if line.strip() else 0
    for split in ("valid", "test"):
        (folder / f"ptb.{split}.txt").write_text(treebank.penn[split])
    return written


def start(code: Path, path: Path, cache: Path, settings: dict, threads: int, windows: int) -> dict:
    script = START.format(threads=threads, settings=settings, path=str(path), windows=windows)
    env = {**os.environ, "PYTHONPATH": str(code), "RNN_TASKS_CACHE": str(cache)}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=code
    )
    if proc.returncode != 0:
        sys.exit(f"a start with {settings} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def step_seconds(vocab: int, threads: int, steps: int = 20) -> float:
    """Median time of one training step of experiment=ptb_lstm's model on a (20, 35) window."""
    import statistics
    import time

    from rnn_tasks.models import LanguageModel

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = LanguageModel(vocab, 350, 350, tie_weights=True, num_layers=2, cell="lstm")
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    x = torch.randint(vocab, (20, 35))
    y = torch.randint(vocab, (20, 35))
    times = []
    for _ in range(steps + 3):
        t = time.perf_counter()
        logits, _ = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times[3:])  # the first steps warm the allocator up


MODES = {  # label -> (data module settings, whether the cache is kept from the run before)
    "cold": ({}, False),
    "cached": ({}, True),
    "streaming": ({"streaming": True}, False),
    "streaming-cached": ({"streaming": True}, True),  # the plan kept from the start before
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=100_000_000)
    parser.add_argument("--modes", nargs="+",
                        default=["cold", "cached", "streaming", "streaming-cached"],
                        choices=list(MODES))  # fmt: skip
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose rnn_tasks runs")
    parser.add_argument("--label", default="after")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--windows", type=int, default=2000, help="windows timed per start")
    parser.add_argument("--workdir", type=Path, default=None, help="corpus and cache (tmp)")
    parser.add_argument("--out", default="results/data_scale.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        corpus, cache = work / "corpus", work / "cache"
        tokens = write_corpus(corpus, args.tokens)
        print(f"corpus: {tokens:,} tokens, {(corpus / 'ptb.train.txt').stat().st_size:,} bytes")
        rows = []
        for mode in args.modes:
            settings, keep = MODES[mode]
            if not keep:
                subprocess.run(["rm", "-rf", str(cache)], check=True)
            r = start(args.code, corpus, cache, settings, args.threads, args.windows)
            rows.append({"mode": mode, **r})
            print(f"{mode:>16}: first batch {r['first_batch_s']:7.1f} s (setup "
                  f"{r['setup_s']:.1f} s), peak {r['peak_gib']:.2f} GiB, "
                  f"{1 / r['window_s']:,.0f} windows/s")  # fmt: skip
    step = step_seconds(rows[0]["vocab"], args.threads)
    for row in rows:
        row["loader_share"] = row["window_s"] / (row["window_s"] + step)
        print(f"{row['mode']:>16}: loader {row['window_s'] * 1e3:.2f} ms a window against a "
              f"{step * 1e3:.0f} ms step: {row['loader_share']:.2%} of an epoch")  # fmt: skip
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    report[args.label] = {
        "command": " ".join(["python", "benchmarks/data_scale.py", *sys.argv[1:]]),
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "tokens": tokens,
        "threads": args.threads,
        "step_s": step,
        "starts": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
