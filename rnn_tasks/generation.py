"""Next-word distributions and autoregressive generation: pure functions over a model's
`forward(tokens (B, T), state) -> (logits (B, T, V), state)` and
`step(ids (B,), state) -> (logits (B, V), state)`.

The prompt is read once and its state carried forward; each new word costs one `step`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from numbers import Integral, Real

import torch
from torch import Tensor, nn


def check_sampling(temperature: float, top_k: int | None) -> None:
    """Raises a ValueError naming a sampling setting of the wrong type or range."""
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, Real)
        or not math.isfinite(temperature)  # nan ended in torch.multinomial's error
        or temperature < 0
    ):
        raise ValueError(
            f"temperature must be a finite number >= 0 (0: greedy), got {temperature!r}"
        )
    if top_k is not None and (
        isinstance(top_k, bool) or not isinstance(top_k, Integral) or top_k < 1
    ):
        raise ValueError(f"top_k must be a whole number >= 1, or None for all words, got {top_k!r}")


def sample_next(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw one id per row from `softmax(logits / temperature)` (B, V) -> (B,).

    `temperature=0` is greedy (argmax); `top_k` keeps only the k most likely words.
    """
    check_sampling(temperature, top_k)
    return _sample(logits, temperature, top_k, generator)


def _sample(logits, temperature, top_k, generator) -> Tensor:
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def next_word_probs(model: nn.Module, context: Sequence[int]) -> Tensor:
    """`P(w | context)` over the vocabulary, (V,), for a context of ids (at least one)."""
    if len(context) == 0:
        raise ValueError("context must hold at least one id (e.g. the sentence boundary)")
    device = next(model.parameters()).device
    logits, _ = model(torch.tensor([list(context)], device=device))
    return torch.softmax(logits[0, -1].float(), dim=-1)


def generate(
    model: nn.Module,
    prompt: Sequence[int],
    max_new_tokens: int,
    eos_id: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> list[int]:
    """Continue `prompt` (ids, starting with the sentence-start marker) word by word.

    Each next word is drawn from the model's softmax and fed back in, until `eos_id` is
    drawn (not included in the result) or `max_new_tokens` words were made.
    Returns the new ids only; `iter_generate` yields them one at a time.
    """
    return list(iter_generate(model, prompt, max_new_tokens, eos_id, temperature, top_k, generator))


def iter_generate(
    model: nn.Module,
    prompt: Sequence[int],
    max_new_tokens: int,
    eos_id: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[int]:
    """`generate`, yielding each new id as soon as it is drawn (to print words as they come).

    The arguments are checked when this is called, not at the first `next()`.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, Integral):
        raise ValueError(f"max_new_tokens must be a whole number, got {max_new_tokens!r}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    check_sampling(temperature, top_k)  # before the loop, which may not sample at all
    if len(prompt) == 0:
        raise ValueError("prompt must hold at least one id (the sentence-start marker)")
    return _generate(model, list(prompt), max_new_tokens, eos_id, temperature, top_k, generator)


@torch.no_grad()
def _generate(model, prompt, max_new_tokens, eos_id, temperature, top_k, generator):
    # no_grad on a generator function covers each resumption, not only the first call
    device = next(model.parameters()).device
    logits, state = model(torch.tensor([prompt], device=device))
    logits = logits[:, -1]  # (1, V)
    for _ in range(max_new_tokens):
        ids = _sample(logits, temperature, top_k, generator)  # (1,), checked above
        if eos_id is not None and int(ids) == eos_id:
            return
        yield int(ids)
        logits, state = model.step(ids, state)
