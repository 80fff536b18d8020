"""The cells' matrix products on each CPU backend torch ships: MKL (`torch.addmm`, what the
cells use today) against oneDNN (`torch.ops.mkldnn._linear_pointwise` on plain dense
tensors, what inductor uses), on the shapes a recurrent layer multiplies.

    python benchmarks/matmul_backends.py                       # 1 and 2 threads
    python benchmarks/matmul_backends.py --threads 2 --repeats 20 --out /tmp/mm.json

The shapes (float32, `y = x W^T + b`):

- `W x` for all steps at once: (B*T, D) x (D, G*H), e.g. 64*128 x 512 -> 2048;
- `U h` at one step: (B, H) x (H, G*H), e.g. 32 x 256 -> 1024 and 64 x 512 -> 2048;
- the output layer `V h` of an LM over a 10k vocabulary: (B*T, H) x (H, 10000).

Each pair is timed interleaved in one process (median of `--repeats` calls each), so
load from other jobs hits both alike; the ratio oneDNN / MKL below 1 means oneDNN is
faster. Both results are compared (max abs difference, float32 rounding). It prints a
table and writes JSON (default `results/matmul_backends.json`); it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from rnn_tasks.runtime import cpu_model  # noqa: E402

# name: (rows, inner, outputs)
SHAPES = {
    "W x, all steps (B 64, T 128, D 512, LSTM H 512)": (64 * 128, 512, 2048),
    "W x, all steps (B 32, T 35, D 256, GRU H 256)": (32 * 35, 256, 768),
    "U h, one step (B 32, H 256, LSTM)": (32, 256, 1024),
    "U h, one step (B 64, H 512, LSTM)": (64, 512, 2048),
    "V h, LM output (B 20 x T 35, H 650, V 10k)": (20 * 35, 650, 10000),
}


def mkl(x, w, b):
    return torch.addmm(b, x, w.t())


def onednn(x, w, b):
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


def onednn_available() -> bool:
    try:
        onednn(torch.ones(1, 1), torch.ones(1, 1), torch.zeros(1))
    except (RuntimeError, AttributeError, NotImplementedError):
        return False
    return True


def time_pair(x, w, b, repeats: int) -> tuple[float, float]:
    """Median seconds per call of MKL and oneDNN, timed alternately."""
    times: dict[str, list[float]] = {"mkl": [], "onednn": []}
    for f in (mkl, onednn):  # warm-up: oneDNN builds its primitive on the first call
        f(x, w, b)
    for _ in range(repeats):
        for name, f in (("mkl", mkl), ("onednn", onednn)):
            start = time.perf_counter()
            f(x, w, b)
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["mkl"]), statistics.median(times["onednn"])


def measure(threads: int, repeats: int) -> list[dict]:
    torch.set_num_threads(threads)
    rows = []
    for name, (m, k, n) in SHAPES.items():
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(m, k, generator=generator)
        w = torch.randn(n, k, generator=generator)
        b = torch.randn(n, generator=generator)
        t_mkl, t_onednn = time_pair(x, w, b, repeats)
        flops = 2 * m * k * n
        rows.append({
            "shape": name, "m": m, "k": k, "n": n, "threads": threads,
            "mkl_gflops": flops / t_mkl / 1e9, "onednn_gflops": flops / t_onednn / 1e9,
            "ratio_onednn_over_mkl": t_onednn / t_mkl,
            "max_abs_diff": float((mkl(x, w, b) - onednn(x, w, b)).abs().max()),
        })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default=str(ROOT / "results" / "matmul_backends.json"))
    args = parser.parse_args(argv)
    if not onednn_available():
        raise SystemExit("no oneDNN linear in this torch (torch.ops.mkldnn._linear_pointwise)")
    before = torch.get_num_threads()
    try:
        rows = [row for threads in args.threads for row in measure(threads, args.repeats)]
    finally:
        torch.set_num_threads(before)
    print(f"{'shape':<50} {'thr':>3} {'MKL GF/s':>9} {'oneDNN GF/s':>11} {'ratio':>6} {'diff':>8}")
    for r in rows:
        print(f"{r['shape']:<50} {r['threads']:>3} {r['mkl_gflops']:9.1f} "
              f"{r['onednn_gflops']:11.1f} {r['ratio_onednn_over_mkl']:6.2f} "
              f"{r['max_abs_diff']:8.1e}")  # fmt: skip
    report = {
        "command": " ".join(["python benchmarks/matmul_backends.py", *(argv or sys.argv[1:])]),
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "mkldnn_enabled": torch.backends.mkldnn.is_available(),
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
