"""Where one time step of inference goes: our hand-written RNN against torch's, op by op.

`rnn_speed.py` says how much slower or faster a cell is; this says why. Both networks hold
the same weights and run one batch-first forward pass under `torch.inference_mode()`:
first timed in interleaved pairs (as `rnn_speed.py` does), then under `torch.profiler`,
whose self CPU time per op is divided by the number of time steps.

    python benchmarks/step_profile.py --threads 2 --out results/step_profile_lstm_2t.json

This is a measurement, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "benchmarks"))

from rnn_speed import TORCH_CLASSES, environment, inference, paired  # noqa: E402

from rnn_tasks.nn import RNN  # noqa: E402


def op_profile(run, calls: int, steps: int, top: int) -> list[dict]:
    """The `top` ops by self CPU time: microseconds and calls per time step."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            run()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:top]
    per_step = calls * steps
    return [
        {
            "op": e.key,
            "us_per_step": round(e.self_cpu_time_total / per_step, 2),
            "calls_per_step": round(e.count / per_step, 3),
        }
        for e in events
    ]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", choices=sorted(TORCH_CLASSES), default="lstm")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256, help="also the input size")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=15, help="timed pairs (ours, torch)")
    parser.add_argument("--calls", type=int, default=10, help="profiled calls of each")
    parser.add_argument("--top", type=int, default=10, help="ops listed per side")
    parser.add_argument("--out", default="results/step_profile.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    B, T, H = args.batch, args.steps, args.hidden
    theirs = TORCH_CLASSES[args.cell](H, H, 1, batch_first=True).eval()
    ours = RNN.from_torch(theirs).eval()
    run_ours, run_torch = inference(ours), inference(theirs)
    run_ours.x = run_torch.x = torch.randn(B, T, H)
    mine, other = paired(run_ours, run_torch, args.pairs, budget_s=1e9, min_pairs=args.pairs)
    report = {
        "environment": environment(args.threads),
        "shape": {"cell": args.cell, "B": B, "T": T, "H": H, "layers": 1, "directions": 1},
        "us_per_step": {
            "ours": round(statistics.median(mine) / T * 1e6, 1),
            "torch": round(statistics.median(other) / T * 1e6, 1),
        },
        "ratio": round(statistics.median(a / b for a, b in zip(mine, other, strict=True)), 3),
        "ops": {
            "ours": op_profile(run_ours, args.calls, T, args.top),
            "torch": op_profile(run_torch, args.calls, T, args.top),
        },
    }
    print(f"{args.cell} B {B} T {T} H {H}, {args.threads} thread(s), inference, per time step:")
    for side in ("ours", "torch"):
        print(f"  {side}: {report['us_per_step'][side]} us (median of {len(mine)} timed calls)")
        for op in report["ops"][side]:
            print(f"    {op['op']:28s} {op['us_per_step']:8.2f} us  x{op['calls_per_step']:g}")
    print(f"  ratio ours / torch, timed: {report['ratio']} (profiled ops run longer than timed)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")
    return report


if __name__ == "__main__":
    main()
