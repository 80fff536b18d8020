"""Training-step speed of the hand-written `rnn_tasks.nn.RNN` on a GPU against cuDNN.

Shapes: B batch, T time, H hidden (input size D = H), L layers.

At each grid point our network and cuDNN's `nn.LSTM/GRU/RNN` hold the same weights
(`RNN.from_torch`). Ours runs three ways: `eager`, the loops as they ran before CUDA graphs
(torch operations launched from Python, several per step); `graphs`, the same loops replayed
from CUDA graphs (`rnn_tasks.nn.graphs`); `fused`, replayed with each step's gate arithmetic
in one kernel (`rnn_tasks.nn.fused`): the default on a GPU. A training step is the forward and
the backward pass of a loss on every output and the final state. The variants are timed in
interleaved rounds with CUDA events after a warm-up (which also records the graphs); a
variant's time is its median over the rounds, and a ratio is ours / cuDNN. TF32 is off on
both sides: float32 throughout, and the default's outputs and gradients are compared with
cuDNN's at every point.

    python benchmarks/gpu_speed.py                 # B 32/128, T 35/128, H 256/1024: ~20 s, H200
    python benchmarks/gpu_speed.py --quick         # smoke test
    python benchmarks/gpu_speed.py --out results/gpu_speed.json

This is a measurement, not a test: it asserts nothing and never fails on a missed target.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from rnn_tasks.nn import RNN, set_cuda_graphs  # noqa: E402
from rnn_tasks.nn.fused import set_fused_steps  # noqa: E402

TORCH_CLASSES = {"elman": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
TARGET = 1.5  # the project's aim: a training step within 1.5x of cuDNN's (LSTM, GRU)
FULL_GRID = {"B": (32, 128), "T": (35, 128), "H": (256, 1024), "L": (1,)}
QUICK_GRID = {"B": (32,), "T": (35,), "H": (256,), "L": (1,)}
# the medium PTB model's own shape (experiment=ptb_lstm_medium), timed beside the grid
EXTRA_POINTS = [("lstm", 20, 35, 650, 2)]


VARIANTS = {"eager": (False, False), "graphs": (True, False), "fused": (True, True)}


def training_step(module, x, variant: str | None = None):
    """A callable running one forward and backward pass; `variant` None: a torch module."""

    def run():
        if variant is not None:
            graphs, fused = VARIANTS[variant]
            set_cuda_graphs(graphs)
            set_fused_steps(fused)
        module.zero_grad(set_to_none=True)
        xs = x.detach().requires_grad_()
        out, state = module(xs)
        h_n = state[0] if isinstance(state, tuple) else state
        (out.square().mean() + h_n.square().mean()).backward()
        return out, xs

    return run


def time_rounds(runs: dict, rounds: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds of each callable per round, interleaved, timed with CUDA events."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    torch.cuda.synchronize()
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            end.synchronize()
            times[name].append(start.elapsed_time(end))
    return times


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def bench_point(cell: str, B: int, T: int, H: int, L: int, args) -> dict:
    torch.manual_seed(0)
    theirs = TORCH_CLASSES[cell](H, H, L, batch_first=True).cuda()
    ours = RNN.from_torch(theirs)
    x = torch.randn(B, T, H, device="cuda")
    runs = {name: training_step(ours, x, name) for name in VARIANTS}
    runs["cudnn"] = training_step(theirs, x)
    times = time_rounds(runs, args.rounds, args.warmup)
    # the default's numbers against cuDNN's (same weights, same input)
    out, xs = runs["fused"]()
    out_ref, xs_ref = runs["cudnn"]()
    diff = {"output": max_rel_diff(out, out_ref), "x.grad": max_rel_diff(xs.grad, xs_ref.grad)}
    diff["U.grad"] = max_rel_diff(ours.cells[0].U.grad, theirs.weight_hh_l0.grad)
    med = {name: statistics.median(t) for name, t in times.items()}
    return {
        "cell": cell,
        "B": B,
        "T": T,
        "H": H,
        "L": L,
        "ms": med,
        "ratio": {name: med[name] / med["cudnn"] for name in VARIANTS},
        "speedup_over_eager": med["eager"] / med["fused"],
        "max_rel_diff_vs_cudnn": diff,
        "rounds": args.rounds,
    }


def environment() -> dict:
    props = torch.cuda.get_device_properties(0)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": props.name,
        "multiprocessors": props.multi_processor_count,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "python": platform.python_version(),
        "tf32": False,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one point per cell, smoke test")
    parser.add_argument("--cells", default="lstm,gru,elman", help="comma-separated subset")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per point")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--out", type=Path, help="default: results/gpu_speed.json")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.exit(2, "gpu_speed.py: no CUDA device here; benchmarks/rnn_speed.py times CPUs\n")
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    unknown = sorted(set(cells) - set(TORCH_CLASSES))
    if unknown:
        parser.error(f"--cells must be among {sorted(TORCH_CLASSES)}, got {unknown}")
    out = args.out or ROOT / (
        "outputs/gpu_speed_quick.json" if args.quick else "results/gpu_speed.json"
    )
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    env = environment()
    print(f"{env['gpu']}, torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}")
    print(
        f"\n{'cell':>5} {'B':>4} {'T':>4} {'H':>5} {'L':>2} | {'eager':>7} {'graphs':>7} "
        f"{'fused':>7} {'cuDNN':>7} ms | ratio to cuDNN: {'eager':>6} {'graphs':>6} {'fused':>6}"
        " | max rel diff"
    )
    grid = QUICK_GRID if args.quick else FULL_GRID
    points = [(c, *p) for c in cells for p in itertools.product(*grid.values())]
    points += [p for p in EXTRA_POINTS if p[0] in cells and not args.quick]
    rows, started = [], time.perf_counter()
    for cell, B, T, H, L in points:
        r = bench_point(cell, B, T, H, L, args)
        rows.append(r)
        ms, ratio = r["ms"], r["ratio"]
        print(
            f"{cell:>5} {B:>4} {T:>4} {H:>5} {L:>2} | {ms['eager']:7.2f} {ms['graphs']:7.2f} "
            f"{ms['fused']:7.2f} {ms['cudnn']:7.2f}    |                 {ratio['eager']:6.2f} "
            f"{ratio['graphs']:6.2f} {ratio['fused']:6.2f} | "
            f"{max(r['max_rel_diff_vs_cudnn'].values()):.1e}",
            flush=True,
        )
    set_cuda_graphs(True)
    set_fused_steps(True)
    summary = {}
    for cell in cells:
        grid_rows = [r for r in rows if r["cell"] == cell and r["L"] == 1]
        worst = max(r["ratio"]["fused"] for r in grid_rows)
        target = TARGET if cell != "elman" else None
        summary[cell] = {
            **{
                f"median_ratio_{name}": statistics.median(r["ratio"][name] for r in grid_rows)
                for name in VARIANTS
            },
            "worst_ratio_fused": worst,
            "target": target,
            "met": None if target is None else worst <= target,
        }
    print("\ntraining step, ours / cuDNN, median over the grid (worst), float32:")
    for cell, s in summary.items():
        target = f"; target <= {s['target']} at every point" if s["target"] else ""
        print(
            f"{cell:>5}: default (graphs + fused) {s['median_ratio_fused']:.2f} "
            f"(worst {s['worst_ratio_fused']:.2f}{target}), graphs alone "
            f"{s['median_ratio_graphs']:.2f}, eager (before) {s['median_ratio_eager']:.2f}"
        )
    result = {
        "command": "python benchmarks/gpu_speed.py" + (" --quick" if args.quick else ""),
        "environment": env,
        "seconds": round(time.perf_counter() - started, 1),
        "summary": summary,
        "points": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {out}")
    return result


if __name__ == "__main__":
    main()
