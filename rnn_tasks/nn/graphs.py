"""CUDA graphs for the recurrent loops: a layer's T steps replayed as one launch.

On a GPU a hand-written cell is launch-bound: each step is a handful of small kernels (a
(B, H) x (H, G*H) product and the gate arithmetic), each a few microseconds of work behind
a few microseconds of Python and launch overhead, and the step must wait for the one
before it. cuDNN's `nn.LSTM` runs the whole loop in one call. Here the loop stays ours,
the same kernels in the same order, but is recorded once per shape as a CUDA graph and
then replayed: the GPU runs the recorded kernels back to back, without Python in between.

`run(fn, inputs, outputs, changed, **options)` is used by the kernels of
`rnn_tasks.nn.bptt` around each forward and backward loop:

- `fn(*inputs, *outputs, graphed=..., **options)` is the loop. It must read and write only
  the tensors it is given (and ones it allocates), never the host: no `.item()`, no
  `.tolist()`; with `graphed=True` it must take the same path whatever the values (the
  masks of every step, not only of the steps with padding).
- The first call of a shape runs eagerly. The second records the graph (after a warm-up on
  a side stream, as `torch.cuda.graphs` asks) and every call from then on replays it:
  `inputs` are copied into the graph's own buffers, `outputs` and the inputs listed in
  `changed` are copied back out, and what `fn` returns is cloned, since the next replay
  overwrites the graph's buffers. The copies move a few MB, microseconds on a GPU.
- A graph is kept per (loop, options, every tensor's shape, strides and dtype, device,
  inference mode), at most `MAX_GRAPHS` of them: once they are recorded, a new shape runs
  eagerly (dropping old graphs to record new ones could record the same shapes again and
  again, each recording costing a few eager calls). A shape that repeats (an LM's BPTT
  windows, a batch size) is recorded once; where lengths vary from batch to batch, the
  lengths met first (the common ones, in a shuffled epoch) get the graphs; padding batches
  to a few lengths (the mask makes padding exact) gives every batch one.

Each graph keeps its buffers (a layer's inputs and outputs) and a memory pool of its own
until `clear()`. Graphs are on by default on CUDA and never used elsewhere (CPUs have no
launch overhead to save): `set_cuda_graphs(False)` or `RNN_TASKS_CUDA_GRAPHS=0` turns them
off; a training config's `cuda_graphs` key decides for its run (the task files: on for the
LM, whose windows repeat one shape; off for tagging and classification). A replay runs the
kernels the loop launched while recording: the eager loop's results, except that a graphed
LSTM or GRU loop does its gate arithmetic in the kernels of `rnn_tasks.nn.fused` (float32
rounding apart). Tested in tests/test_nn_graphs.py, and against cuDNN in
tests/test_nn_torch_equivalence.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

ENV = "RNN_TASKS_CUDA_GRAPHS"
MAX_GRAPHS = 128

_enabled: bool | None = None  # None: read ENV at first use
_graphs: dict[tuple, _Graph] = {}
_seen: dict[tuple, int] = {}  # calls of a shape not yet recorded


def set_cuda_graphs(enabled: bool) -> None:
    """Record and replay the recurrent loops as CUDA graphs on GPUs (default: on).

    Turning them off keeps the graphs recorded so far (and their memory): `clear()` frees it.
    """
    global _enabled
    _enabled = bool(enabled)


def cuda_graphs() -> bool:
    """Whether the loops on CUDA tensors are replayed from graphs."""
    global _enabled
    if _enabled is None:
        value = os.environ.get(ENV, "1").strip().lower()
        if value not in ("0", "1", "true", "false", "on", "off"):
            raise ValueError(f"${ENV} must be 1 or 0 (true/false, on/off), got {value!r}")
        _enabled = value in ("1", "true", "on")
    return _enabled


def clear() -> None:
    """Forget every recorded graph (and the memory it holds)."""
    _graphs.clear()
    _seen.clear()


def run(
    fn: Callable[..., tuple],
    inputs: Sequence[Tensor | None],
    outputs: Sequence[Tensor | None] = (),
    changed: Sequence[int] = (),
    **options,
) -> tuple:
    """`fn(*inputs, *outputs, graphed=..., **options)`, replayed from a CUDA graph when it can.

    `outputs` are written by `fn` and not read; `changed` are the indices of `inputs` that
    `fn` changes in place and the caller reads afterwards. Returns what `fn` returns.
    """
    if not _use_graph(inputs):
        return fn(*inputs, *outputs, graphed=False, **options)
    key = _key(fn, inputs, outputs, options)
    graph = _graphs.get(key)
    if graph is None:
        if len(_graphs) >= MAX_GRAPHS:  # full: new shapes run as they are
            return fn(*inputs, *outputs, graphed=False, **options)
        if len(_seen) > 16 * MAX_GRAPHS:  # lengths that never repeat: forget them
            _seen.clear()
        _seen[key] = _seen.get(key, 0) + 1
        if _seen[key] < 2:  # a shape seen once may never come back: run it as it is
            return fn(*inputs, *outputs, graphed=False, **options)
        del _seen[key]
        graph = _graphs[key] = _Graph(fn, inputs, outputs, options)
    return graph(inputs, outputs, changed)


def _use_graph(inputs) -> bool:
    first = next(t for t in inputs if t is not None)
    return (
        first.is_cuda
        and cuda_graphs()
        and not torch.cuda.is_current_stream_capturing()  # inside a caller's own graph
        and not torch.compiler.is_compiling()
    )


def _signature(t: Tensor | None):
    return None if t is None else (tuple(t.shape), t.stride(), t.dtype)


def _key(fn, inputs, outputs, options) -> tuple:
    tensors = (*inputs, *outputs)
    device = next(t for t in tensors if t is not None).device
    return (
        fn,
        tuple(sorted(options.items())),
        tuple(map(_signature, tensors)),
        device,
        torch.is_inference_mode_enabled(),  # an inference tensor can't be copied into later
    )


def _buffer(t: Tensor | None) -> Tensor | None:
    """An uninitialised tensor like `t`: its strides where its memory is dense without
    overlaps (a batch-first layout stays batch-first), else contiguous (an expanded state,
    a slice of a wider tensor)."""
    return None if t is None else torch.empty_like(t)


class _Graph:
    """One loop recorded for one signature, with the buffers its replays read and write."""

    def __init__(self, fn, inputs, outputs, options) -> None:
        self.inputs = [_buffer(t) for t in inputs]
        self.outputs = [_buffer(t) for t in outputs]
        for mine, theirs in zip(self.inputs, inputs, strict=True):
            if mine is not None:
                mine.copy_(theirs)  # real values: the warm-up must not meet NaNs or garbage

        def run():
            return fn(*self.inputs, *self.outputs, graphed=True, **options)

        self.replay, self.returned = _record(run)

    def __call__(self, inputs, outputs, changed) -> tuple:
        for mine, theirs in zip(self.inputs, inputs, strict=True):
            if mine is not None:
                mine.copy_(theirs)
        self.replay()
        for i in changed:
            inputs[i].copy_(self.inputs[i])
        for theirs, mine in zip(outputs, self.outputs, strict=True):
            if theirs is not None:
                theirs.copy_(mine)
        return tuple(None if t is None else t.clone() for t in self.returned)


def _record(run: Callable[[], tuple]) -> tuple[Callable[[], None], tuple]:
    """Capture `run` as a CUDA graph: returns (replay, what `run` returned while recording:
    the tensors each replay writes)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.no_grad():
        run()  # cuBLAS handles, workspaces and the allocator set up outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"), torch.no_grad():
        returned = run()
    return graph.replay, returned
