"""Speed of the hand-written `rnn_tasks.nn.RNN` against `torch.nn.RNN/LSTM/GRU` on CPU.

Shapes: B batch, T time, H hidden (input size D = H), L layers, K directions, G gates,
V vocabulary.

For each cell and grid point both networks hold the same weights (`RNN.from_torch`) and run
in the same process, timed in interleaved pairs (ours, torch, ours, torch, ...) after a
warm-up, so that load from other processes hits both sides alike. A point's ratio is the
median over its pairs of ours / torch; a cell's score is the median over the grid.
Beside the grid: per-token generation, the recurrence alone and end to end (embedding ->
RNN step -> output layer -> softmax -> sample), and inference and generation with our
products in reduced precision (`reduce_precision`) against the same float32 torch module.

    python benchmarks/rnn_speed.py                  # full grid; float32 alone ~20 min on 2 cores
    python benchmarks/rnn_speed.py --quick          # smoke test, < 1 min
    python benchmarks/rnn_speed.py --cells lstm --threads 1 --out results/lstm_1t.json
    python benchmarks/rnn_speed.py --matmul onednn --precisions float32,int8,bf16

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
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from rnn_tasks.nn import RNN, matmul_backend, reduce_precision, set_matmul_backend  # noqa: E402
from rnn_tasks.nn.matmul import CHOICES as MATMUL_CHOICES  # noqa: E402
from rnn_tasks.nn.matmul import bf16_native as native_bf16  # noqa: E402
from rnn_tasks.nn.precision import PRECISIONS  # noqa: E402
from rnn_tasks.runtime import cpu_model  # noqa: E402

TORCH_CLASSES = {"elman": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
GATES = {"elman": 1, "gru": 3, "lstm": 4}
# Largest acceptable median ratio ours / torch, float32 (lower is faster; issue 19). End-to-end
# generation and reduced precision are reported beside them, without a target.
TARGETS = {
    "elman": {"train": 0.85, "infer": 0.8, "generate": 0.7},
    "gru": {"train": 0.95, "infer": 0.9, "generate": 0.7},
    "lstm": {"train": 1.0, "infer": 1.0, "generate": 0.7},
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
    """Training and inference at one grid point; inference again per reduced precision
    (`infer_int8`, ...: ours reduced against torch in float32, with the accuracy cost)."""
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
    for precision in args.reduced:
        fast = reduce_precision(ours, precision)
        run_ours, run_torch = inference(fast), inference(theirs)
        run_ours.x = run_torch.x = x
        times = paired(run_ours, run_torch, args.repeats, args.budget)
        with torch.inference_mode():
            diff = (fast(x)[0] - ours(x)[0]).abs().max().item()  # (B, T, H*K) outputs
        row[f"infer_{precision}"] = {**summarize(*times, flops), "max_abs_diff": diff}
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


class TinyLM(nn.Module):
    """The modules a language model's generation loop calls: embedding (V, H) -> recurrent
    network -> output layer Linear(H, V). Ours and torch's share `embed` and `head`."""

    def __init__(self, embed: nn.Embedding, rnn: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.embed, self.rnn, self.head = embed, rnn, head


def torch_step(rnn: nn.RNNBase):
    """`RNN.step`'s contract for a batch-first torch module: (B, D) in, (B, H) out."""

    def step(x_t, state):
        out, state = rnn(x_t.unsqueeze(1), state)  # (B, 1, H)
        return out[:, 0], state

    return step


def decode(lm: TinyLM, step, tokens: int, seed: int = 0) -> Tensor:
    """Sample `tokens` tokens at batch 1 from token 0, as a user's loop does: embed, one
    recurrent step carrying the state, output layer, softmax, `torch.multinomial`. The
    generator is seeded so that both sides draw the same tokens while their
    probabilities agree."""
    gen = torch.Generator().manual_seed(seed)
    ids, state, drawn = torch.zeros(1, dtype=torch.long), None, []
    with torch.no_grad():
        for _ in range(tokens):
            h, state = step(lm.embed(ids), state)  # (1, H)
            probs = torch.softmax(lm.head(h), -1)  # (1, V)
            ids = torch.multinomial(probs, 1, generator=gen).view(1)
            drawn.append(ids)
    return torch.cat(drawn)  # (tokens,)


def teacher_forced_logits(lm: TinyLM, drawn: Tensor) -> Tensor:
    """Logits (1, N, V) at every step of a decode that drew `drawn` (N,), in one pass."""
    inputs = torch.cat([torch.zeros(1, dtype=torch.long), drawn[:-1]])  # what each step read
    with torch.no_grad():
        out, _ = lm.rnn(lm.embed(inputs).unsqueeze(0))  # (1, N, H)
        return lm.head(out)


def bench_e2e(cell: str, args, H: int = 512, L: int = 2) -> dict:
    """Tokens per second of end-to-end generation at batch 1 (`decode`), ours against torch
    with the same embedding and output layer, in float32 and per reduced precision."""
    torch.manual_seed(0)
    theirs = TORCH_CLASSES[cell](H, H, L, batch_first=True)
    embed, head = nn.Embedding(args.vocab, H), nn.Linear(H, args.vocab)
    torch_lm = TinyLM(embed, theirs, head)
    ours_lm = TinyLM(embed, RNN.from_torch(theirs), head)
    reference = decode(torch_lm, torch_step(theirs), args.tokens)
    row = {"cell": cell, "H": H, "L": L, "vocab": args.vocab, "tokens": args.tokens}
    for precision in ("float32", *args.reduced):
        lm = reduce_precision(ours_lm, precision)  # float32: ours_lm itself
        ours_s, torch_s = paired(
            lambda lm=lm: decode(lm, lm.rnn.step, args.tokens),
            lambda: decode(torch_lm, torch_step(theirs), args.tokens),
            3 * args.repeats,
            args.budget,
            min_pairs=5,
        )
        drawn = decode(lm, lm.rnn.step, args.tokens)
        diff = teacher_forced_logits(lm, reference) - teacher_forced_logits(torch_lm, reference)
        row[precision] = {
            "ratio": statistics.median(a / b for a, b in zip(ours_s, torch_s, strict=True)),
            "ours_tokens_per_s": args.tokens / statistics.median(ours_s),
            "torch_tokens_per_s": args.tokens / statistics.median(torch_s),
            "pairs": len(ours_s),
            # Sampling is seeded alike: while the probabilities agree, so do the tokens.
            "same_tokens": (drawn == reference).float().mean().item(),
            "max_abs_diff": diff.abs().max().item(),  # logits against torch's, float32
        }
    return row


def choose_precisions(requested: list[str], force_bf16: bool) -> tuple[list[str], dict]:
    """The reduced precisions to time, and {precision: why skipped}."""
    reduced = [p for p in dict.fromkeys(requested) if p != "float32"]
    skipped = {}
    if "bf16" in reduced and not force_bf16 and not native_bf16():
        reduced.remove("bf16")
        skipped["bf16"] = (
            "this CPU has no bfloat16 instructions (AVX512_BF16, AMX): torch emulates them, "
            "so a timing says nothing; --force-bf16 times it anyway"
        )
    return reduced, skipped


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


def print_row(r: dict, reduced: list[str]) -> None:
    tr, inf = r["train"], r["infer"]
    extra = "".join(
        f" | {r[f'infer_{p}']['ratio']:6.2f} {r[f'infer_{p}']['max_abs_diff']:7.1e}"
        for p in reduced
    )
    print(
        f"{r['cell']:>5} {r['B']:>3} {r['T']:>4} {r['H']:>4} {r['L']:>2} {r['K']:>2} | "
        f"{tr['ours_ms']:9.1f} {tr['torch_ms']:9.1f} {tr['ratio']:6.2f} {tr['ours_gflops']:6.1f} | "
        f"{inf['ours_ms']:9.1f} {inf['torch_ms']:9.1f} {inf['ratio']:6.2f} "
        f"{inf['ours_gflops']:6.1f}{extra}",
        flush=True,
    )


def summary(rows: list[dict], generation: list[dict], e2e: list[dict], reduced: list[str]):
    """Per cell: the targeted float32 ratios (`met`), then the untargeted ones beside them
    (`target` None): reduced-precision inference, end-to-end generation in each precision,
    with the largest difference from float32 (inference) or torch (logits) seen."""

    def scored(ratio: float, target: float | None, **extra) -> dict:
        met = None if target is None else ratio <= target
        return {"median_ratio": ratio, "target": target, "met": met, **extra}

    out = {}
    for cell in dict.fromkeys(r["cell"] for r in rows):
        mine = [r for r in rows if r["cell"] == cell]
        out[cell] = {}
        for mode in ("train", "infer"):
            ratio = statistics.median(r[mode]["ratio"] for r in mine)
            out[cell][mode] = scored(ratio, TARGETS[cell][mode])
    for g in generation:
        target = TARGETS[g["cell"]]["generate"]
        out.setdefault(g["cell"], {})["generate"] = scored(g["ratio"], target)
    for cell in list(out):
        mine = [r for r in rows if r["cell"] == cell]
        for p in reduced:
            if mine:
                ratio = statistics.median(r[f"infer_{p}"]["ratio"] for r in mine)
                diff = max(r[f"infer_{p}"]["max_abs_diff"] for r in mine)
                out[cell][f"infer_{p}"] = scored(ratio, None, max_abs_diff=diff)
        for g in (g for g in e2e if g["cell"] == cell):
            for p in ("float32", *reduced):
                key = "e2e" if p == "float32" else f"e2e_{p}"
                out[cell][key] = scored(g[p]["ratio"], None, max_abs_diff=g[p]["max_abs_diff"])
    return out


def print_summary(result: dict, env: dict) -> None:
    print(
        f"\nmedian ratio ours / torch (target), {env['cpu']}, {env['threads']} "
        f"thread{'s' if env['threads'] != 1 else ''}, matmul {env['matmul_backend']}:"
    )
    for cell, modes in result.items():
        parts = []
        for mode, m in modes.items():
            if m["target"] is not None:
                missed = "" if m["met"] else f", MISSED by {m['median_ratio'] - m['target']:.2f}"
                parts.append(f"{mode} {m['median_ratio']:.2f} (<= {m['target']}{missed})")
            else:
                parts.append(f"{mode} {m['median_ratio']:.2f} [max diff {m['max_abs_diff']:.0e}]")
        print(f"{cell:>5}: " + ", ".join(parts))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny grid, smoke test")
    parser.add_argument("--cells", default="elman,gru,lstm", help="comma-separated subset")
    parser.add_argument("--repeats", type=int, default=7, help="most timed pairs per point")
    parser.add_argument(
        "--budget", type=float, default=2.0, help="seconds per point that cut pairs (min 3)"
    )
    parser.add_argument(
        "--tokens", type=int, help="tokens per generation run (default 200; 50 with --quick)"
    )
    parser.add_argument(
        "--vocab", type=int, help="end-to-end generation's vocabulary (10000; 1000 with --quick)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    parser.add_argument(
        "--matmul", choices=MATMUL_CHOICES, default="auto", help="set_matmul_backend(...) first"
    )
    parser.add_argument(
        "--precisions",
        default="float32,int8",
        help=f"comma-separated among {list(PRECISIONS)}; float32 always runs",
    )
    parser.add_argument(
        "--force-bf16", action="store_true", help="time bf16 even where the CPU emulates it"
    )
    parser.add_argument(
        "--out", type=Path, help="default: results/rnn_speed.json; outputs/ for --quick"
    )
    args = parser.parse_args(argv)
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    unknown = sorted(set(cells) - set(TORCH_CLASSES))
    if unknown:
        parser.error(f"--cells must be among {sorted(TORCH_CLASSES)}, got {unknown}")
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        parser.error(f"--precisions must be among {list(PRECISIONS)}, got {unknown}")
    args.reduced, skipped = choose_precisions(precisions, args.force_bf16)
    if args.out is None:  # a smoke test must not overwrite the grid the README cites
        args.out = ROOT / (
            "outputs/rnn_speed_quick.json" if args.quick else "results/rnn_speed.json"
        )
    if args.quick:
        args.repeats, args.budget = min(args.repeats, 5), 0.2
    if args.tokens is None:
        args.tokens = 50 if args.quick else 200
    if args.vocab is None:
        args.vocab = 1000 if args.quick else 10_000
    torch.set_num_threads(args.threads)
    try:  # after the threads: "auto" times both libraries at this thread count
        set_matmul_backend(args.matmul)
    except ValueError as e:
        parser.error(str(e))
    grid = QUICK_GRID if args.quick else FULL_GRID

    env = environment(torch.get_num_threads())
    env["matmul_backend"] = matmul_backend()  # what "auto" resolved to
    env["native_bf16"] = native_bf16()
    peak = matmul_peak(1024 if args.quick else 2048)
    print(
        f"torch {env['torch']}, {env['threads']} thread(s), {env['cpu']}, "
        f"matmul {env['matmul_backend']} (--matmul {args.matmul})"
    )
    print(f"float32 matmul peak: {peak:.1f} GFLOP/s")
    for p, why in skipped.items():
        print(f"skipping {p}: {why}")
    print(
        f"\n{'cell':>5} {'B':>3} {'T':>4} {'H':>4} {'L':>2} {'K':>2} | "
        f"{'train ms':>9} {'torch':>9} {'ratio':>6} {'GF/s':>6} | "
        f"{'infer ms':>9} {'torch':>9} {'ratio':>6} {'GF/s':>6}"
        + "".join(f" | {p + ' ratio':>6} {'diff':>7}" for p in args.reduced)
    )
    started = time.perf_counter()
    rows = []
    for cell in cells:
        for B, T, H, L, K in itertools.product(*grid.values()):
            rows.append(bench_point(cell, B, T, H, L, K, args))
            print_row(rows[-1], args.reduced)

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

    print(
        f"\nend-to-end generation, batch 1, embedding {args.vocab} x {gen_H} -> 2 layers "
        f"-> Linear({gen_H}, {args.vocab}) -> softmax -> multinomial, {args.tokens} tokens:"
    )
    e2e = []
    for cell in cells:
        g = bench_e2e(cell, args, H=gen_H)
        e2e.append(g)
        for p in ("float32", *args.reduced):
            m = g[p]
            print(
                f"{cell:>5} {p:>7}: ours {m['ours_tokens_per_s']:7.0f} tokens/s, torch "
                f"{m['torch_tokens_per_s']:7.0f} tokens/s, ratio {m['ratio']:.2f}, "
                f"logits vs torch {m['max_abs_diff']:.1e}, same tokens {m['same_tokens']:.0%}"
            )

    result = summary(rows, generation, e2e, args.reduced)
    print_summary(result, env)
    elapsed = time.perf_counter() - started
    env["load_average_end"] = list(os.getloadavg())
    print(f"\n{elapsed:.0f} s; load average {env['load_average']} -> {env['load_average_end']}")

    report = {
        "environment": env,
        "matmul_peak_gflops": peak,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "precisions": ["float32", *args.reduced],
        "targets": TARGETS,
        "summary": result,
        "grid": rows,
        "generation": generation,
        "generation_e2e": e2e,
        "skipped": skipped,
        "seconds": elapsed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
