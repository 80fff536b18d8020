"""One epoch of pytorch/examples' `word_language_model` on Penn Treebank, with torch's
`nn.LSTM` and then with `rnn_tasks.nn.RNN.from_torch` of it (the same script, `main.py
--rnn-impl torch|ours`, the same initial weights), each in its own process on one thread.

    python benchmarks/word_language_model/run.py          # results/word_language_model.json
    python benchmarks/word_language_model/run.py --quick  # first 400 lines of each split

upstream's `data.py` reads `train.txt`, `valid.txt` and `test.txt`; the PTB copy names them
`ptb.train.txt` and so on, so this links them under those names in a temporary folder. It
writes, per implementation, the training time of the epoch, the whole epoch's time as
main.py prints it (training and validation) and the validation and test perplexities as
main.py reports them; it asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from rnn_tasks.runtime import cpu_model  # noqa: E402

DATA = Path(os.environ.get("RNN_TASKS_DATA") or ROOT.parent / "shared" / "data") / "ptb"
# LSTM 2 x 200, no dropout, one epoch; main.py's defaults for the rest (lr 20, clip 0.25,
# batch 20, bptt 35).
MODEL_ARGS = ["--model", "LSTM", "--emsize", "200", "--nhid", "200", "--nlayers", "2"]
MODEL_ARGS += ["--dropout", "0", "--epochs", "1"]
# What main.py prints: the rnn-tasks train-time line, upstream's epoch and test lines.
PATTERNS = {
    "train_s": r"\| train time:\s*([\d.]+)s",
    "epoch_s": r"\| end of epoch\s+1 \| time:\s*([\d.]+)s",
    "valid_loss": r"valid loss\s+([\d.]+)",
    "valid_ppl": r"valid ppl\s+([\d.]+)",
    "test_loss": r"test loss\s+([\d.]+)",
    "test_ppl": r"test ppl\s+([\d.]+)",
}


def corpus_dir(ptb: Path, dest: Path, lines: int | None) -> Path:
    """train/valid/test.txt for upstream's data.py: links to the PTB files, or copies of
    their first `lines` lines."""
    dest.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        src, dst = ptb / f"ptb.{split}.txt", dest / f"{split}.txt"
        if lines is None:
            dst.symlink_to(src)
        else:
            with src.open(encoding="utf8") as f:
                dst.write_text("".join(f.readline() for _ in range(lines)), encoding="utf8")
    return dest


def run(impl: str, data: Path, work: Path, seed: int, threads: int) -> dict:
    command = [sys.executable, "main.py", "--data", str(data), *MODEL_ARGS, "--seed", str(seed)]
    command += ["--threads", str(threads), "--rnn-impl", impl, "--save", str(work / f"{impl}.pt")]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=HERE, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    (work / f"{impl}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        raise SystemExit(f"main.py --rnn-impl {impl} failed:\n{proc.stderr[-3000:]}")
    result = {"command": " ".join(["python", *command[1:]]), "process_wall_s": round(wall, 1)}
    for key, pattern in PATTERNS.items():
        match = re.search(pattern, proc.stdout)
        if match is None:
            raise SystemExit(f"main.py --rnn-impl {impl}: no {key} in its output")
        result[key] = float(match.group(1))
    result["printed"] = [
        line for line in proc.stdout.splitlines() if re.match(r"\| (rnn|end of|End of)", line)
    ]
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder of ptb.{split}.txt")
    parser.add_argument("--quick", action="store_true", help="first 400 lines of each split")
    parser.add_argument("--impls", nargs="+", default=["torch", "ours"], choices=["torch", "ours"])
    parser.add_argument("--seed", type=int, default=1111)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out",
        type=Path,
        help="default: results/word_language_model.json (with --quick: one in the temp folder)",
    )
    args = parser.parse_args(argv)
    out = args.out or (
        Path(tempfile.gettempdir()) / "word_language_model_quick.json"
        if args.quick
        else ROOT / "results" / "word_language_model.json"
    )
    work = Path(tempfile.mkdtemp(prefix="word_language_model_"))
    data = corpus_dir(args.data.resolve(), work / "data", 400 if args.quick else None)
    report = {
        "command": " ".join(["python", *sys.argv]),
        "what": "pytorch/examples word_language_model main.py, one epoch of PTB, "
        "LSTM 2 x 200, dropout 0; torch's nn.LSTM against rnn_tasks.nn.RNN.from_torch",
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "threads": args.threads,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average": list(os.getloadavg()),
        "runs": {},
    }
    for impl in args.impls:
        report["runs"][impl] = run(impl, data, work, args.seed, args.threads)
        r = report["runs"][impl]
        print(
            f"{impl:6s} train {r['train_s']:7.1f} s  epoch {r['epoch_s']:7.1f} s  "
            f"valid ppl {r['valid_ppl']:8.2f}  test ppl {r['test_ppl']:8.2f}",
            flush=True,
        )
    report["load_average_end"] = list(os.getloadavg())
    if {"torch", "ours"} <= set(report["runs"]):
        torch_run, ours = report["runs"]["torch"], report["runs"]["ours"]
        report["train_ratio_ours_over_torch"] = round(ours["train_s"] / torch_run["train_s"], 3)
    report["logs"] = str(work)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out} (logs in {work})")
    return report


if __name__ == "__main__":
    main()
