"""Pretrained word vectors for an encoder: a GloVe / word2vec text file, or the input
embeddings of a trained language-model checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ..text import Vocab
from ..text.embeddings import read_vectors


def lm_checkpoint_vectors(path: str | Path, vocab: Vocab) -> tuple[Tensor, Tensor]:
    """The input embeddings of an `lm` checkpoint, rows matched to `vocab` by word."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("rnn_tasks", {}).get("task") != "lm":
        raise ValueError(f"{path}: not a language-model checkpoint of rnn-tasks")
    lm_vocab = Vocab.from_dict(ckpt["hyper_parameters"]["vocab"])
    state = ckpt["state_dict"]
    key = next(
        (k for k in ("model.encoder.embedding.weight", "model.embedding.weight") if k in state),
        None,
    )
    if key is None:
        raise ValueError(f"{path}: no input embedding found in the checkpoint")
    table = state[key]
    vectors = table.new_zeros(len(vocab), table.shape[1])
    found = torch.zeros(len(vocab), dtype=torch.bool)
    for i, word in enumerate(vocab.itos):
        for w in (word, word.lower()):
            if w in lm_vocab and w != lm_vocab.unk:  # <unk>'s vector stands for no word
                vectors[i], found[i] = table[lm_vocab.index(w)], True
                break
    return vectors, found


def pretrained_vectors(path: str | Path, vocab: Vocab) -> tuple[Tensor, Tensor]:
    """(V, E) vectors and a (V,) mask of the words found, from a `.ckpt` or a text file."""
    if str(path).endswith(".ckpt"):
        if not Path(path).is_file():
            raise FileNotFoundError(f"pretrained embeddings checkpoint not found: {path}")
        return lm_checkpoint_vectors(path, vocab)
    return read_vectors(path, vocab)
