"""What the tagging and classification tasks share: loading pretrained word vectors into
their encoder."""

from __future__ import annotations

from lightning.pytorch.utilities import rank_zero_info

from ..text import Vocab
from ..text.pipeline import TextPipeline
from .base import RecurrentTask
from .pretrained import pretrained_vectors


class EncoderTask(RecurrentTask):
    """A task whose model has `model.encoder` (an `rnn_tasks.models.Encoder`).

    `embeddings` = {"path": GloVe/word2vec text file or an `lm` checkpoint, "freeze": bool}
    initialises the input embeddings at the start of training (`setup("fit")`), not in
    `__init__`, so that loading a checkpoint never needs the vectors file.
    """

    vocab: Vocab
    chars: Vocab | None  # the training characters, for a `CharEncoder`
    pipeline: TextPipeline  # how raw text becomes the model's input, as in training

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
