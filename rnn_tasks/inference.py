"""A trained model used on raw text, batched: pure torch over a model and its `TextPipeline`.

The three tasks (`rnn_tasks.tasks`) and an exported model (`rnn_tasks.load_model`) predict
through these classes alike. Texts are grouped by length before batching, so a batch pads
little and a file runs at batch speed; results come back in the order given. The models
are padding-correct, so a text's result does not depend on the batch it landed in (up
to float rounding).

Shapes: B batch, T words, L characters per word, C classes or tags, V vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from .generation import next_word_probs
from .models import CharEncoder
from .text.batching import pad_right
from .text.chars import pad_chars
from .text.pipeline import TextPipeline


def by_length(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices of items in batches of similar length (longest first)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


class _EncoderPredictor:
    """What the tagger and the classifier share: words -> padded ids (and characters) ->
    the model's logits, batch by batch."""

    def __init__(self, model: nn.Module, pipeline: TextPipeline, batch_size: int = 64) -> None:
        self.model = model
        self.pipeline = pipeline
        self.batch_size = batch_size
        self.spells = any(isinstance(m, CharEncoder) for m in model.modules())
        if self.spells and pipeline.chars is None:
            raise ValueError("the model spells its words, but the pipeline has no characters")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @staticmethod
    def _many(texts) -> list:
        if isinstance(texts, str):  # a list of its characters is not what was meant
            raise TypeError("give a list of texts (one text: [text])")
        return list(texts)

    def words(self, text: str | list[str]) -> list[str]:
        return self.pipeline.words(text) if isinstance(text, str) else list(text)

    @torch.no_grad()
    def logits(self, sentences: list[list[str]]) -> Iterator[tuple[list[int], Tensor, Tensor]]:
        """`(indices, logits, lengths)` for each length-sorted batch of `sentences`."""
        self.model.eval()
        for batch in by_length([len(s) for s in sentences], self.batch_size):
            words = [sentences[i] for i in batch]
            pad_id = self.pipeline.vocab.pad_id
            ids, lengths = pad_right([self.pipeline.ids(w) for w in words], pad_id)
            chars = None
            if self.spells:
                chars = pad_chars([self.pipeline.spell(w) for w in words], ids.shape[1])
                chars = chars.to(self.device)
            logits = self.model(ids.to(self.device), lengths.to(self.device), chars=chars)
            yield batch, logits.float(), lengths


class ClassifierPredictor(_EncoderPredictor):
    """A document's label and every label's probability."""

    def __init__(self, model, pipeline, labels: list[str], batch_size: int = 64) -> None:
        super().__init__(model, pipeline, batch_size)
        self.labels = list(labels)

    def predict_proba(self, texts: list[str]) -> list[dict[str, float]]:
        """Every label's probability, for each text."""
        # an empty text is one unknown word, as the data module reads it
        sentences = [self.words(t) or ["<unk>"] for t in self._many(texts)]
        out: list[dict[str, float] | None] = [None] * len(texts)
        for batch, logits, _ in self.logits(sentences):
            for i, probs in zip(batch, torch.softmax(logits, -1), strict=True):
                out[i] = {label: float(p) for label, p in zip(self.labels, probs, strict=True)}
        return out

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        """The most likely label of each text, and its probability."""
        return [max(p.items(), key=lambda kv: kv[1]) for p in self.predict_proba(texts)]


class TaggerPredictor(_EncoderPredictor):
    """A tag for every word of a sentence (a raw text, tokenised here, or a list of words)."""

    def __init__(self, model, pipeline, tags: list[str], batch_size: int = 64) -> None:
        super().__init__(model, pipeline, batch_size)
        self.tags = list(tags)

    def predict(self, sentences: list[str | list[str]], probs: bool = False) -> list[list]:
        """`[(word, tag), ...]` per sentence; with `probs`, `(word, tag, {tag: p})`."""
        words = [self.words(s) for s in self._many(sentences)]
        out: list[list] = [[] for _ in words]
        nonempty = [i for i, w in enumerate(words) if w]
        for batch, logits, lengths in self.logits([words[i] for i in nonempty]):
            p = torch.softmax(logits, -1)  # (B, T, C)
            for row, j in enumerate(batch):
                i = nonempty[j]
                best = p[row, : lengths[row]].argmax(-1)
                out[i] = [
                    (w, self.tags[int(t)], self._probs(p[row, k])) if probs else (w, self.tags[t])
                    for k, (w, t) in enumerate(zip(words[i], best.tolist(), strict=True))
                ]
        return out

    def _probs(self, p: Tensor) -> dict[str, float]:
        return {tag: float(q) for tag, q in zip(self.tags, p, strict=True)}


class LMPredictor:
    """A language model's view of text: the next word's distribution, a word's probability
    and rank after a context (`P(fish | thanks for all the)`), and a text's log-probability.

    Every text is read from a sentence start: the boundary token (`<eos>` in PTB-style
    streams, playing the lecture's `<s>`) comes first, and `score` counts the boundary
    that ends the sentence (`</s>`) too.
    """

    def __init__(
        self, model: nn.Module, pipeline: TextPipeline, boundary: str, batch_size: int = 64
    ) -> None:
        self.model = model
        self.pipeline = pipeline
        self.boundary_id = pipeline.vocab.index(boundary)
        self.batch_size = batch_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def context_ids(self, text: str) -> list[int]:
        return [self.boundary_id, *self.pipeline.ids(self.pipeline.words(text))]

    def next_word_probs(self, text: str) -> Tensor:
        """`P(w | text)` over the vocabulary (V,)."""
        self.model.eval()
        return next_word_probs(self.model, self.context_ids(text))

    def next_words(self, text: str, k: int = 10) -> list[tuple[str, float]]:
        probs = self.next_word_probs(text)
        top = probs.topk(min(k, len(probs)))
        itos = self.pipeline.vocab.itos
        return [(itos[int(i)], float(p)) for p, i in zip(*top, strict=True)]

    def prob(self, words: str | list[str], context: str = "") -> dict[str, dict]:
        """Each word's probability of coming next after `context`, and its rank among the
        vocabulary (1: the most likely). A word the model does not know is said so
        (`"in_vocabulary": False`, no probability) rather than read as `<unk>`."""
        words = [words] if isinstance(words, str) else list(words)
        probs = self.next_word_probs(context)
        out = {}
        for word in words:
            if self.pipeline.unknown([word]):
                out[word] = {"in_vocabulary": False, "p": None, "rank": None}
                continue
            p = probs[self.pipeline.ids([word])[0]]
            out[word] = {"in_vocabulary": True, "p": float(p), "rank": int((probs > p).sum()) + 1}
        return out

    @torch.no_grad()
    def score(self, texts: list[str]) -> list[dict]:
        """Each text's log-probability (natural log, the end of sentence included), its
        perplexity `exp(-logprob / tokens)`, its token count and its unknown words."""
        if isinstance(texts, str):
            raise TypeError("give a list of texts (one text: [text])")
        self.model.eval()
        words = [self.pipeline.words(t) for t in texts]
        rows = [[self.boundary_id, *self.pipeline.ids(w), self.boundary_id] for w in words]
        out: list[dict | None] = [None] * len(texts)
        for batch in by_length([len(r) for r in rows], self.batch_size):
            ids, lengths = pad_right([rows[i] for i in batch], self.boundary_id)  # (B, T + 1)
            ids = ids.to(self.device)
            logits, _ = self.model(ids[:, :-1])  # right padding: earlier steps are unaffected
            logp = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
            for row, i in enumerate(batch):
                n = int(lengths[row]) - 1  # predicted tokens: the words and </s>
                total = float(logp[row, :n].sum())
                out[i] = {
                    "logprob": total,
                    "ppl": math.exp(-total / n),
                    "tokens": n,
                    "unknown": self.pipeline.unknown(words[i]),
                }
        return out
