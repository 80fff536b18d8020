"""One epoch of the language model on 1 and on N CPU processes (DDP, gloo), side by side.

Each run is `scripts/train.py task=lm` (PTB from `data_root`, the default 1-layer LSTM)
for one epoch, `threads` threads per process, the same global batch (`data.batch_size`
rows, divided among the processes), so both runs compute the same model. From each run's
`metrics.json`: the epoch's training time (validation and test excluded), tokens per
second over all processes, and the validation and test perplexity, which must agree.

    python benchmarks/ddp_speed.py                  # 1 vs 2 processes, 1 thread each
    python benchmarks/ddp_speed.py --processes 1 2 4 --threads 1 --extra data.batch_size=40

It prints a table and writes JSON (default `results/ddp_speed.json`) with the command, the
CPU model, torch's version and the date. The processes of one machine share its memory
bandwidth: a measurement of this machine, not a promise of linear scaling.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import torch  # noqa: E402

from rnn_tasks.runtime import cpu_model  # noqa: E402


def train(processes: int, threads: int, extra: list[str], out: Path) -> dict:
    """One epoch on `processes` CPU processes; the run's metrics.json."""
    ddp = ["trainer.strategy=ddp", f"trainer.devices={processes}"] if processes > 1 else []
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "task=lm", "trainer.max_epochs=1",
           "trainer.accelerator=cpu", f"threads={threads}", "trainer.enable_progress_bar=false",
           "checkpoint_every_minutes=null", *ddp, *extra, f"hydra.run.dir={out}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads((out / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=1, help="per process")
    parser.add_argument("--extra", nargs="*", default=[], help="train.py overrides for every run")
    parser.add_argument("--out", default="results/ddp_speed.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.processes:
            summary = train(n, args.threads, args.extra, Path(tmp) / f"p{n}")
            m = summary["metrics"]
            rows.append({
                "processes": n,
                "threads_per_process": args.threads,
                "epoch_train_s": summary["perf"]["epoch_train_s"],
                "tokens_per_s": summary["perf"]["tokens_per_s"],
                "val_ppl": m["val/ppl"],
                "test_ppl": m["test/ppl"],
            })  # fmt: skip
    base = rows[0]["epoch_train_s"]
    header = ("processes", "epoch s", "tokens/s", "speed-up", "val ppl", "test ppl")
    print(" ".join(f"{h:>9}" for h in header))
    for r in rows:
        r["speed_up"] = base / r["epoch_train_s"]
        print(f"{r['processes']:>9} {r['epoch_train_s']:>9.1f} {r['tokens_per_s']:>9,.0f} "
              f"{r['speed_up']:>9.2f} {r['val_ppl']:>9.3f} {r['test_ppl']:>9.3f}")  # fmt: skip
    record = {
        "command": "python benchmarks/ddp_speed.py " + " ".join(sys.argv[1:]),
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
