"""Speed of the hand-written `rnn_tasks.nn.RNN` against `torch.nn.RNN/LSTM/GRU` on CPU.

Shapes: B batch, T time, H hidden (input size D = H), L layers, K directions, G gates.

For each cell and grid point both networks hold the same weights (`RNN.from_torch`) and run
in the same process, timed in interleaved pairs (ours, torch, ours, torch, ...) after a
warm-up, so that load from other processes hits both sides alike. A point's ratio is the
median over its pairs of ours / torch; a cell's score is the median over the grid.

    python benchmarks/rnn_speed.py                  # full grid, ~20 min on 2 cores
    python benchmarks/rnn_speed.py --quick          # smoke test, < 1 min
    python benchmarks/rnn_speed.py --cells lstm --threads 1 --out results/lstm_1t.json

This is a measurement, not a test: it asserts nothing and never fails on a missed target.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from rnn_tasks.nn import RNN  # noqa: E402
from rnn_tasks.runtime import cpu_model  # noqa: E402

TORCH_CLASSES = {"elman": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
GATES = {"elman": 1, "gru": 3, "lstm": 4}
# Largest acceptable median ratio ours / torch (lower is faster).
TARGETS = {
    "elman": {"train": 0.85, "infer": 0.85},
    "gru": {"train": 0.95, "infer": 1.05},
    "lstm": {"train": 1.15, "infer": 1.3},
    "generate": 0.7,
}
FULL_GRID = {"B": (32, 64), "T": (35, 128), "H": (256, 512), "L": (1, 2), "K": (1, 2)}
QUICK_GRID = {"B": (16,), "T": (20,), "H": (128,), "L": (1, 2), "K": (1, 2)}


# -- measurement ----------------------------------------------------------------------


def forward_flops(B: int, T: int, H: int, L: int, K: int, G: int) -> float:
    """Matmul FLOPs of one forward pass: 2 * B * T * (D + H) * G * H per layer-direction."""
    total = 0.0
    for layer in range(L):
        D = H if layer == 0 else H * K
        total += K * 2 * B * T * (D + H) * G * H
    return total


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of the best of `repeats` (n x n) @ (n x n) float32 products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def paired(run_ours, run_torch, max_pairs: int, budget_s: float, min_pairs: int = 3):
    """Time both callables in alternation; returns (ours seconds, torch seconds) lists.

    One untimed call of each warms up caches and the allocator. The number of pairs is
    `max_pairs`, cut down (never below `min_pairs`) so that a point costs about
    `budget_s`: the largest grid points take seconds per call.
    """
    start = time.perf_counter()
    run_ours()
    run_torch()
    warm = time.perf_counter() - start
    pairs = max(min_pairs, min(max_pairs, int(budget_s / max(warm, 1e-9))))
    ours, theirs = [], []
    for _ in range(pairs):
        for fn, times in ((run_ours, ours), (run_torch, theirs)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return ours, theirs


def summarize(ours: list[float], theirs: list[float], flops: float) -> dict:
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    t_ours, t_torch = statistics.median(ours), statistics.median(theirs)
    return {
        "ratio": statistics.median(ratios),
        "ours_ms": 1e3 * t_ours,
        "torch_ms": 1e3 * t_torch,
        "ours_gflops": flops / t_ours / 1e9,
        "torch_gflops": flops / t_torch / 1e9,
        "pairs": len(ratios),
    }


def training_step(module):
    """Forward and backward of `output.sum()` plus a loss on the final hidden state."""

    def run():
        module.zero_grad(set_to_none=True)
        x = run.x.detach().requires_grad_()  # an embedding below would want dL/dx too
        out, state = module(x)
        h_n = state[0] if isinstance(state, tuple) else state
        (out.sum() + h_n.square().sum()).backward()

    return run


def inference(module):
    def run():
        with torch.inference_mode():
            module(run.x)

    return run


def bench_point(cell: str, B, T, H, L, K, args) -> dict:
    torch.manual_seed(0)
    theirs = TORCH_CLASSES[cell](H, H, L, batch_first=True, bidirectional=K == 2)
    ours = RNN.from_torch(theirs, bptt="manual")
    x = torch.randn(B, T, H)
    flops = forward_flops(B, T, H, L, K, GATES[cell])
    row = {"cell": cell, "B": B, "T": T, "H": H, "L": L, "K": K, "forward_gflop": flops / 1e9}
    for mode, make, factor in (("train", training_step, 3), ("infer", inference, 1)):
        run_ours, run_torch = make(ours), make(theirs)
        run_ours.x = run_torch.x = x
        times = paired(run_ours, run_torch, args.repeats, args.budget)
        row[mode] = summarize(*times, factor * flops)
    return row


def bench_generation(cell: str, args, H: int = 512, L: int = 2) -> dict:
    """Per-token latency of step-by-step decoding at batch 1, carrying the state."""
    torch.manual_seed(0)
    theirs = TORCH_CLASSES[cell](H, H, L, batch_first=True)
    ours = RNN.from_torch(theirs)
    xs = torch.randn(args.tokens, H)

    def run_ours():
        with torch.no_grad():  # as rnn_tasks.generation runs a model
            state = None
            for x_t in xs:
                _, state = ours.step(x_t.view(1, H), state)

    def run_torch():
        with torch.no_grad():
            state = None
            for x_t in xs:
                _, state = theirs(x_t.view(1, 1, H), state)

    ours_s, torch_s = paired(run_ours, run_torch, 3 * args.repeats, args.budget, min_pairs=5)
    ratios = [a / b for a, b in zip(ours_s, torch_s, strict=True)]
    per_token = 1e6 / args.tokens
    return {
        "cell": cell,
        "H": H,
        "L": L,
        "tokens": args.tokens,
        "ratio": statistics.median(ratios),
        "ours_us_per_token": per_token * statistics.median(ours_s),
        "torch_us_per_token": per_token * statistics.median(torch_s),
        "pairs": len(ratios),
    }


# -- report ---------------------------------------------------------------------------


def environment(threads: int) -> dict:
    def git(*cmd):
        try:
            return subprocess.run(
                ["git", *cmd], cwd=ROOT, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_revision": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        # Other processes share the CPUs; a high load average means noisier times.
        "load_average": list(os.getloadavg()),
    }


def print_row(r: dict) -> None:
    tr, inf = r["train"], r["infer"]
    print(
        f"{r['cell']:>5} {r['B']:>3} {r['T']:>4} {r['H']:>4} {r['L']:>2} {r['K']:>2} | "
        f"{tr['ours_ms']:9.1f} {tr['torch_ms']:9.1f} {tr['ratio']:6.2f} {tr['ours_gflops']:6.1f} | "
        f"{inf['ours_ms']:9.1f} {inf['torch_ms']:9.1f} {inf['ratio']:6.2f} "
        f"{inf['ours_gflops']:6.1f}",
        flush=True,
    )


def summary(rows: list[dict], generation: list[dict]) -> dict:
    out = {}
    for cell in dict.fromkeys(r["cell"] for r in rows):
        mine = [r for r in rows if r["cell"] == cell]
        out[cell] = {}
        for mode in ("train", "infer"):
            ratio = statistics.median(r[mode]["ratio"] for r in mine)
            target = TARGETS[cell][mode]
            out[cell][mode] = {"median_ratio": ratio, "target": target, "met": ratio <= target}
    for g in generation:
        target = TARGETS["generate"]
        out.setdefault(g["cell"], {})["generate"] = {
            "median_ratio": g["ratio"],
            "target": target,
            "met": g["ratio"] <= target,
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny grid, smoke test")
    parser.add_argument("--cells", default="elman,gru,lstm", help="comma-separated subset")
    parser.add_argument("--repeats", type=int, default=7, help="most timed pairs per point")
    parser.add_argument(
        "--budget", type=float, default=2.0, help="seconds per point that cut pairs (min 3)"
    )
    parser.add_argument("--tokens", type=int, default=200, help="tokens per generation run")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    parser.add_argument(
        "--out", type=Path, help="default: results/rnn_speed.json; outputs/ for --quick"
    )
    args = parser.parse_args(argv)
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    unknown = sorted(set(cells) - set(TORCH_CLASSES))
    if unknown:
        parser.error(f"--cells must be among {sorted(TORCH_CLASSES)}, got {unknown}")
    if args.out is None:  # a smoke test must not overwrite the grid the README cites
        args.out = ROOT / (
            "outputs/rnn_speed_quick.json" if args.quick else "results/rnn_speed.json"
        )
    if args.quick:
        args.repeats, args.budget, args.tokens = min(args.repeats, 5), 0.2, 50
    torch.set_num_threads(args.threads)
    grid = QUICK_GRID if args.quick else FULL_GRID

    env = environment(torch.get_num_threads())
    peak = matmul_peak(1024 if args.quick else 2048)
    print(f"torch {env['torch']}, {env['threads']} threads, {env['cpu']}")
    print(f"float32 matmul peak: {peak:.1f} GFLOP/s\n")
    print(
        f"{'cell':>5} {'B':>3} {'T':>4} {'H':>4} {'L':>2} {'K':>2} | "
        f"{'train ms':>9} {'torch':>9} {'ratio':>6} {'GF/s':>6} | "
        f"{'infer ms':>9} {'torch':>9} {'ratio':>6} {'GF/s':>6}"
    )
    started = time.perf_counter()
    rows = []
    for cell in cells:
        for B, T, H, L, K in itertools.product(*grid.values()):
            rows.append(bench_point(cell, B, T, H, L, K, args))
            print_row(rows[-1])

    gen_H = 128 if args.quick else 512
    print(f"\ngeneration, batch 1, 2 layers, H {gen_H}, {args.tokens} tokens:")
    generation = []
    for cell in cells:
        g = bench_generation(cell, args, H=gen_H)
        generation.append(g)
        print(
            f"{cell:>5}: ours {g['ours_us_per_token']:7.1f} us/token, "
            f"torch {g['torch_us_per_token']:7.1f} us/token, ratio {g['ratio']:.2f}"
        )

    result = summary(rows, generation)
    print("\nmedian ratio ours / torch (target):")
    for cell, modes in result.items():
        parts = [
            f"{mode} {m['median_ratio']:.2f} (<= {m['target']}{'' if m['met'] else ', MISSED'})"
            for mode, m in modes.items()
        ]
        print(f"{cell:>5}: " + ", ".join(parts))
    elapsed = time.perf_counter() - started
    env["load_average_end"] = list(os.getloadavg())
    print(f"\n{elapsed:.0f} s; load average {env['load_average']} -> {env['load_average_end']}")

    report = {
        "environment": env,
        "matmul_peak_gflops": peak,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "targets": TARGETS,
        "summary": result,
        "grid": rows,
        "generation": generation,
        "seconds": elapsed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
