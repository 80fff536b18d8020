"""Reduced-precision inference: int8 or bfloat16 products for a trained network.

    fast = reduce_precision(model, "int8")   # a copy; `model` stays float32
    with torch.no_grad():
        logits = fast(...)

Every hand-written cell (`W x`, `U h`) and every `nn.Linear` (an output layer `V`, a
classifier) of `module` computes its products in the precision asked for; embeddings,
nonlinearities, the recurrent state and the sums stay float32, and so do the parameters, so
a reduced model saves, exports and loads exactly as its float32 original.

- "int8": dynamic quantisation, as `torch.ao.quantization.quantize_dynamic` does for
  `nn.Linear`/`nn.LSTM`: weights int8 per output row, each product's input quantised per
  call (fbgemm's kernels, x86 with AVX2 or later).
- "bf16": weights and inputs rounded to bfloat16, products returned in float32. Fast only
  where the CPU has bfloat16 instructions (AVX512_BF16, AMX); elsewhere torch emulates them.

Its accuracy cost on the real tasks is measured in results/reduced_precision.json
(`benchmarks/reduced_precision.py`). Training needs the float32 network: a reduced one
refuses a pass that would need gradients.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import Tensor, nn

from .cells import _Cell
from .matmul import REDUCED, inference_only

PRECISIONS = ("float32", *REDUCED)


class ReducedLinear(nn.Module):
    """`nn.Linear`, its product in int8 or bfloat16; the same parameters, shared."""

    def __init__(self, linear: nn.Linear, precision: str) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.precision = precision

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and self.weight.requires_grad:
            raise inference_only(self.precision)
        y = REDUCED[self.precision].linear(x.reshape(-1, self.in_features), self.weight, self.bias)
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, precision={self.precision!r}"


def reduce_precision(module: nn.Module, precision: str, inplace: bool = False) -> nn.Module:
    """`module` (a copy unless `inplace`) with its products in `precision`: "int8", "bf16",
    or "float32" (unchanged)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "float32":
        return module
    torch_rnns = [n for n, m in module.named_modules() if isinstance(m, nn.RNNBase)]
    if torch_rnns:
        warnings.warn(
            f"reduce_precision leaves torch.nn recurrent modules as they are ({torch_rnns}): "
            f"replace them with rnn_tasks.nn.RNN.from_torch(...) first",
            stacklevel=2,
        )
    if not inplace:
        module = copy.deepcopy(module)
    if isinstance(module, nn.Linear):
        return ReducedLinear(module, precision)
    for parent in module.modules():
        if isinstance(parent, _Cell):
            parent.precision = precision
        for name, child in parent.named_children():
            if type(child) is nn.Linear:
                setattr(parent, name, ReducedLinear(child, precision))
    return module
