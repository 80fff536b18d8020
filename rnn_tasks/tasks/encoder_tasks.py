"""What the tagging and classification tasks share: building an encoder-based model from
the `model` config and loading pretrained word vectors into it."""

from __future__ import annotations

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from ..models import CharEncoder
from ..text import Vocab, pad_chars, spell, word_ids
from .base import RecurrentTask
from .pretrained import pretrained_vectors


def encoder_kwargs(model: dict, task: str) -> dict:
    """The `Encoder` arguments of a `configs/model/*.yaml` dict, checked for this task."""
    kwargs = dict(model)
    kind = kwargs.pop("type", "rnn")
    if kind != "rnn":
        raise ValueError(
            f"model.type={kind!r} is a language model only; task={task} "
            "needs model.type='rnn' (model=elman, lstm or gru)"
        )
    if kwargs.pop("tie_weights", False):
        raise ValueError(f"model.tie_weights applies to task=lm only, not task={task}")
    return kwargs


class EncoderTask(RecurrentTask):
    """A task whose model has `model.encoder` (an `rnn_tasks.models.Encoder`).

    `embeddings` = {"path": GloVe/word2vec text file or an `lm` checkpoint, "freeze": bool}
    initialises the input embeddings at the start of training (`setup("fit")`), not in
    `__init__`, so that loading a checkpoint never needs the vectors file.
    """

    vocab: Vocab
    chars: Vocab | None  # the training characters, for a `CharEncoder`

    def spell(self, sentences: list[list[str]]) -> Tensor | None:
        """Character ids (B, T, L) of right-padded sentences, for a model that spells."""
        if self.chars is None or not any(isinstance(m, CharEncoder) for m in self.model.modules()):
            return None
        spelled = [spell(words, self.chars) for words in sentences]
        return pad_chars(spelled, max(map(len, sentences))).to(self.device)

    @torch.no_grad()
    def _logits(self, words: list[str]) -> Tensor:
        """The model's output for one text given as words (no batch dimension)."""
        self.eval()
        hp = self.hparams
        ids = word_ids(words, self.vocab, hp.lowercase, hp.zero_digits)
        ids = torch.tensor([ids], device=self.device)
        return self.model(ids, chars=self.spell([words]))[0]

    def setup(self, stage: str) -> None:
        spec = self.hparams.get("embeddings") or {}
        if stage != "fit" or getattr(self, "_vectors_loaded", False):
            return
        added, num_added = self.vocab.added_from, self.vocab.num_added  # data.pretrained_words
        if not spec.get("path"):
            if num_added:
                raise ValueError(
                    f"the vocabulary's last {num_added} words come from data.pretrained_words "
                    "and training never sees them: without task.embeddings.path (the same "
                    "file) their vectors would stay random"
                )
            return
        vectors, found = pretrained_vectors(spec["path"], self.vocab)
        want = self.model.encoder.embedding.weight.shape[1]
        if vectors.shape[1] != want:
            raise ValueError(
                f"{spec['path']} holds {vectors.shape[1]}-dimensional vectors but "
                f"model.embedding_dim={want}; set model.embedding_dim={vectors.shape[1]}"
            )
        if not found.any():
            raise ValueError(
                f"{spec['path']} has a vector for none of the {len(self.vocab)} words of the "
                f"vocabulary: is it the right file for this data (language, case)?"
            )
        if num_added and not found[added:].all():
            raise ValueError(
                f"{int((~found[added:]).sum())} of the {num_added} words added from "
                f"data.pretrained_words have no vector in {spec['path']}: give "
                "task.embeddings.path the file the words came from"
            )
        self.model.encoder.load_pretrained(vectors, found, freeze=spec.get("freeze", False))
        self._vectors_loaded = True
        share = float(found.float().mean())
        found_words = f"{int(found.sum())}/{len(found)} words ({share:.1%}"
        found_words += f", {num_added} added from data.pretrained_words)" if num_added else ")"
        rank_zero_info(f"pretrained embeddings: {found_words} found in {spec['path']}")
