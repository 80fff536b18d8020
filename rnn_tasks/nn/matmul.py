"""The matrix products of the recurrent kernels, and which library computes them.

Nearly all of a recurrent layer's time goes to a few products (B batch, T time, D input,
H hidden, G gates): per step, `h U^T` forward and `delta U` backward; over the whole
sequence, `x W^T` and `delta W`. torch's `addmm` runs them with the BLAS torch was built
with (MKL on x86). oneDNN, which torch also ships and which `nn.LSTM` uses on CPU, is much
faster on some CPUs and not on others:

    AMD EPYC with AVX-512:   oneDNN ~1.8x MKL on these shapes (issue 19's measurement)
    AMD EPYC Zen 2 (AVX2):   whole-sequence products within 11% (results/matmul_backends.json);
                             per-step ones 7-10% faster alone (weight packed once per call),
                             but a whole LSTM step through them 2-10% slower

so the kernels ask `backend_for(x)` for their products, and the library is chosen once:

- "blas", "onednn", or "onednn-steps" (oneDNN for the per-step products, BLAS for the
  rest), from `set_matmul_backend(name)`, `RNN_TASKS_MATMUL`, or `matmul=` in a training
  config;
- "auto" (the default) times an LSTM layer's training step with each and keeps BLAS unless
  another is at least `AUTO_MARGIN` faster. The choice is kept per CPU, thread count and
  torch version in `~/.cache/rnn_tasks/matmul.json` (`RNN_TASKS_CACHE` moves it), so that
  two runs of one command on one machine compute alike.

The choice is logged (logger "rnn_tasks"); a training run records it in `metrics.json` and
its checkpoints, and a resumed run uses its checkpoint's. The libraries agree to float32
rounding. oneDNN serves CPU float32 only; other dtypes and devices (float64 in the tests,
CUDA) always take torch's own `addmm`.

`Int8` and `BF16` are for inference only, and per module, never by default: dynamically
quantised int8 products (fbgemm) or bfloat16 ones, which a network gets from
`rnn_tasks.nn.reduce_precision`.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
import warnings
import weakref
from pathlib import Path

import torch
from torch import Tensor

from ..files import cache_root

log = logging.getLogger("rnn_tasks")

ENV = "RNN_TASKS_MATMUL"
CHOICES = ("auto", "blas", "onednn", "onednn-steps")
AUTO_MARGIN = 1.05  # oneDNN must be this many times faster than BLAS to be chosen


class Blas:
    """torch's own `addmm`: MKL on x86 CPUs, cuBLAS on GPUs."""

    name = "blas"

    @staticmethod
    def prepare(M: Tensor, rows: int | None = None) -> Tensor:
        """`M` laid out for `x M^T` products with `rows` rows of `x` each (a hint)."""
        # `h @ U^T` with U^T laid out (H, G*H) runs markedly faster for small batches than
        # with the transposed view of U (MKL, ~1.4x at B = 32); the copy is made once per call.
        return M.t().contiguous()

    @staticmethod
    def addmm_(out: Tensor, x: Tensor, P: Tensor) -> Tensor:
        """`out += x M^T`, with `P = prepare(M)`."""
        return out.addmm_(x, P)

    @staticmethod
    def addmm(out: Tensor, b: Tensor, x: Tensor, P: Tensor) -> Tensor:
        """`out = b + x M^T`, with `P = prepare(M)`."""
        return torch.addmm(b, x, P, out=out)

    @staticmethod
    def linear(x: Tensor, M: Tensor, b: Tensor | None = None, out: Tensor | None = None):
        """`x M^T + b` for 2-D `x`, into `out` (any strides) when given."""
        return torch.mm(x, M.t(), out=out) if b is None else torch.addmm(b, x, M.t(), out=out)


class OneDNN:
    """oneDNN's inner product (what inductor uses on CPU), with a weight that serves many
    products reordered once into oneDNN's blocked layout for the number of rows at hand."""

    name = "onednn"

    @staticmethod
    def prepare(M: Tensor, rows: int | None = None) -> Tensor:
        # Packed for `rows`, the per-step product was 7-10% faster than on the plain weight
        # and than MKL's addmm (Zen 2, B 32-64, H 256-512); the plain weight also works.
        if rows is None or not hasattr(torch.ops.mkldnn, "_reorder_linear_weight"):
            return M.contiguous()
        return torch.ops.mkldnn._reorder_linear_weight(M.contiguous(), rows)

    @staticmethod
    def addmm_(out: Tensor, x: Tensor, P: Tensor) -> Tensor:
        # Product then add: faster than the "add" post-op (binary), which needs a copy back.
        return out.add_(torch.ops.mkldnn._linear_pointwise(x, P, None, "none", [], ""))

    @staticmethod
    def addmm(out: Tensor, b: Tensor, x: Tensor, P: Tensor) -> Tensor:
        return out.copy_(torch.ops.mkldnn._linear_pointwise(x, P, b, "none", [], ""))

    @staticmethod
    def linear(x: Tensor, M: Tensor, b: Tensor | None = None, out: Tensor | None = None):
        y = torch.ops.mkldnn._linear_pointwise(x, M.contiguous(), b, "none", [], "")
        return y if out is None else out.copy_(y)


class Int8:
    """Dynamically quantised int8 products for inference: weights int8 per output row,
    each call's input quantised on the fly (fbgemm's `quantized::linear_dynamic`).

    Prepacking a weight costs a pass over it, so prepared weights are cached per
    parameter and reused until the parameter changes (`Tensor._version`).
    """

    name = "int8"

    @staticmethod
    def prepare(M: Tensor, rows: int | None = None) -> object:
        M = M.detach().float().contiguous()
        scale = (M.abs().amax(1) / 127).clamp_min(1e-12).double()
        zero = torch.zeros(M.shape[0], dtype=torch.long)
        with warnings.catch_warnings():  # torch marks quantised tensors as deprecated (2.10+)
            warnings.simplefilter("ignore", UserWarning)
            q = torch.quantize_per_channel(M, scale, zero, 0, torch.qint8)
        return torch.ops.quantized.linear_prepack(q, None)

    @staticmethod
    def addmm_(out: Tensor, x: Tensor, P: object) -> Tensor:
        return out.add_(torch.ops.quantized.linear_dynamic(x.contiguous(), P, True))

    @staticmethod
    def addmm(out: Tensor, b: Tensor, x: Tensor, P: object) -> Tensor:
        return out.copy_(torch.ops.quantized.linear_dynamic(x.contiguous(), P, True)).add_(b)

    @classmethod
    def linear(cls, x: Tensor, M: Tensor, b: Tensor | None = None, out: Tensor | None = None):
        y = torch.ops.quantized.linear_dynamic(x.contiguous(), cached(cls, M), True)
        return _add_bias_into(y, b, out)


class BF16:
    """bfloat16 products for inference: weights and each call's input rounded to bfloat16,
    the product accumulated and returned in float32 (the state stays float32). Fast only on
    CPUs with bfloat16 instructions (AVX512_BF16, AMX); elsewhere torch emulates them."""

    name = "bf16"

    @staticmethod
    def prepare(M: Tensor, rows: int | None = None) -> Tensor:
        return M.detach().to(torch.bfloat16).t().contiguous()

    @staticmethod
    def _mm(x: Tensor, P: Tensor) -> Tensor:
        return torch.mm(x.to(torch.bfloat16), P).to(x.dtype)

    @classmethod
    def addmm_(cls, out: Tensor, x: Tensor, P: Tensor) -> Tensor:
        return out.add_(cls._mm(x, P))

    @classmethod
    def addmm(cls, out: Tensor, b: Tensor, x: Tensor, P: Tensor) -> Tensor:
        return torch.add(cls._mm(x, P), b, out=out)

    @classmethod
    def linear(cls, x: Tensor, M: Tensor, b: Tensor | None = None, out: Tensor | None = None):
        return _add_bias_into(cls._mm(x, cached(cls, M)), b, out)


def bf16_native() -> bool:
    """Whether the CPU has bfloat16 instructions (AVX512_BF16 or AMX); without them torch
    emulates bfloat16 products, far slower than float32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, torch >= 2.1
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def _add_bias_into(y: Tensor, b: Tensor | None, out: Tensor | None) -> Tensor:
    """A reduced-precision product's result `y` (new, float32), plus `b`, into `out`."""
    if b is not None:
        y = y.add_(b)
    return y if out is None else out.copy_(y)


def inference_only(precision: str) -> RuntimeError:
    """The error for a pass that needs gradients through int8 or bfloat16 products."""
    return RuntimeError(
        f"this network computes in {precision} (reduce_precision), for inference only: "
        f"run it under torch.no_grad(), or train the float32 network"
    )


class OneDNNSteps(OneDNN):
    """oneDNN for the per-step products (`h U^T`, `delta U`), BLAS for the whole-sequence
    ones (`x W^T`, `delta W`): what `auto` picks where only the first are faster in oneDNN."""

    name = "onednn-steps"
    linear = staticmethod(Blas.linear)


Backend = type[Blas] | type[OneDNN] | type[Int8] | type[BF16]
BACKENDS: dict[str, Backend] = {"blas": Blas, "onednn": OneDNN, "onednn-steps": OneDNNSteps}
REDUCED: dict[str, Backend] = {"int8": Int8, "bf16": BF16}  # inference only, per module

_chosen: Backend | None = None
_cache: dict[int, tuple[weakref.ref, dict]] = {}  # id(parameter) -> (ref, prepared copies)


def set_matmul_backend(name: str) -> str:
    """Use `name` ("blas", "onednn", "onednn-steps" or "auto") for every later product;
    returns the backend now in use (for "auto", the measured or cached choice)."""
    global _chosen
    if name not in CHOICES:
        raise ValueError(f"matmul backend must be one of {list(CHOICES)}, got {name!r}")
    if name.startswith("onednn") and not onednn_available():
        raise ValueError(f"matmul backend {name!r} needs oneDNN, which this torch lacks")
    _chosen = _auto() if name == "auto" else BACKENDS[name]
    log.info("matmul backend: %s%s", _chosen.name, " (auto)" if name == "auto" else "")
    return _chosen.name


def matmul_backend() -> str:
    """The backend in use, choosing it now (from $RNN_TASKS_MATMUL, else "auto") if needed."""
    return _current().name


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled


def backend_for(x: Tensor) -> Backend:
    """The backend for products with `x`: the chosen one for CPU float32, else BLAS."""
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return Blas
    return _current()


def cached(backend: Backend, M: Tensor, rows: int | None = None):
    """`backend.prepare(M, rows)` for a parameter (or a view of one), kept until it changes.

    Only used outside autograd: a prepared copy must not hide a weight's gradient.
    """
    base = M._base if M._base is not None else M
    key = (backend.name, M.data_ptr(), tuple(M.shape), tuple(M.stride()), rows)
    ident = id(base)  # tensors compare by value, so they are keyed by id
    slot = _cache.get(ident)
    if slot is None or slot[0]() is not base:
        slot = (weakref.ref(base, lambda _: _cache.pop(ident, None)), {})
        _cache[ident] = slot
    entries = slot[1]
    hit = entries.get(key)
    if hit is not None and hit[0] == base._version:
        return hit[1]
    prepared = backend.prepare(M, rows)
    entries[key] = (base._version, prepared)
    return prepared


def _current() -> Backend:
    if _chosen is None:
        set_matmul_backend(os.environ.get(ENV, "auto"))
    return _chosen


def _auto() -> Backend:
    """The measured choice for this CPU, thread count and torch, measured once per machine
    and then read back, so that two runs of one command compute alike."""
    if not onednn_available():
        return Blas
    key = " | ".join((_cpu_signature(), f"{torch.get_num_threads()} threads", torch.__version__))
    path = cache_root() / "matmul.json"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if known.get(key) in BACKENDS:
        return BACKENDS[known[key]]
    # The first product may come from anywhere, a kernel under inference_mode included.
    with torch.inference_mode(False), torch.enable_grad():
        chosen = _measure()
    try:  # a cache: if it cannot be written, the next process measures again
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**known, key: chosen.name}, indent=1))
        os.replace(tmp, path)
    except OSError as e:
        log.debug("matmul choice not cached in %s: %s", path, e)
    return chosen


def _cpu_signature() -> str:
    """What decides the fastest library: the CPU's model, family and vector instructions."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            name = name.strip()
            if name in ("model name", "cpu family", "model") and name not in fields:
                fields[name] = value.strip()
    except OSError:
        fields["model name"] = platform.processor() or platform.machine()
    fields["isa"] = torch.backends.cpu.get_cpu_capability()
    return ", ".join(f"{k} {v}" for k, v in fields.items())


def _measure() -> Backend:
    """Times one LSTM layer's training step (B 32, T 16, H 256; the hand-written kernels,
    forward and backward) with each library, in interleaved rounds: about 0.5 s on 2 cores.
    A whole step, not the bare products: the oneDNN step product alone measured 9% faster
    on a Zen 2 EPYC, the step that uses it 2-10% slower (weight packing, copies)."""
    from .bptt import LSTMBPTT  # it imports this module

    global _chosen
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 32, 256, generator=gen).requires_grad_()
    W, U = (torch.randn(1024, 256, generator=gen).mul_(0.06).requires_grad_() for _ in "WU")
    b, h0 = torch.zeros(1024, requires_grad=True), torch.zeros(32, 256)

    def step():
        S, _, _ = LSTMBPTT.apply(x, W, b, U, h0, h0, None, False)
        S.sum().backward()

    best = {}
    for _ in range(6):
        for mm in (Blas, OneDNNSteps, OneDNN):
            _chosen = mm
            start = time.perf_counter()
            step()
            best[mm] = min(best.get(mm, float("inf")), time.perf_counter() - start)
    _chosen = None
    times = {mm.name: f"{t * 1e3:.1f} ms" for mm, t in best.items()}
    log.debug("matmul timing, an LSTM layer's training step: %s", times)
    fastest = min(best, key=best.get)
    return fastest if best[Blas] >= AUTO_MARGIN * best[fastest] else Blas
