"""The three task models over one shared encoder; pure torch, logits only.

Shapes: B batch, T time, E embedding size, H hidden units per direction, K directions,
V vocabulary, C classes (tags or labels), N context words of the feed-forward LM.

- `Encoder`: word embeddings (plus a `CharEncoder` vector per word, optionally) ->
  dropout -> `rnn_tasks.nn.RNN`.
- `CharEncoder`: a word from its characters, with our own bidirectional RNN.
- `LanguageModel`: the lecture's `y_t = softmax(V h_t)` over a unidirectional encoder.
- `FeedForwardLM`: the N-gram neural LM (Bengio et al. 2003): the embeddings of the N
  previous words, concatenated, through one hidden layer.
- `Tagger`: a softmax over tags at every step of a (bidirectional) encoder.
- `Classifier`: the forward state at the last real word and the backward state at the
  first, concatenated, into a feed-forward classifier.

Losses live in `rnn_tasks.tasks`; these modules only return logits.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import nn as recurrent  # our hand-written layers (not torch.nn)
from .nn.dropout import dropout_layer
from .nn.rnn import CellName, State


class CharEncoder(nn.Module):
    """A word's vector from its spelling: a bidirectional RNN over its characters; the
    forward state after the last character and the backward state after the first,
    concatenated (Ling et al. 2015; Plank et al. 2016). Gives unseen words a
    representation built from suffixes, capitals and digits.

    Shapes: N words, L characters, D char embedding, H char hidden units.
    """

    def __init__(
        self,
        num_chars: int,
        embedding_dim: int = 32,
        hidden_size: int = 64,
        cell: CellName = "lstm",
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_chars, embedding_dim, padding_idx=0)
        self.rnn = recurrent.RNN(embedding_dim, hidden_size, cell=cell, bidirectional=True)

    @property
    def output_size(self) -> int:
        return self.rnn.output_size

    def forward(self, chars: Tensor, mask: Tensor) -> Tensor:
        """`chars` (B, T, L) char ids (0 = padding), `mask` (B, T) real words -> (B, T, 2H)."""
        words = chars[mask]  # (N, L): only real words go through the RNN
        lengths = (words != 0).sum(-1).clamp(min=1)
        _, state = self.rnn(self.embedding(words), lengths)
        h_n = state[0] if isinstance(state, tuple) else state  # (2, N, H)
        out = chars.new_zeros(*mask.shape, self.output_size, dtype=h_n.dtype)
        out[mask] = torch.cat((h_n[0], h_n[1]), -1)
        return out


def char_encoder(
    num_chars: int, char_embedding_dim: int, char_hidden_size: int, cell: CellName
) -> CharEncoder | None:
    """A `CharEncoder` when `char_embedding_dim > 0`, else None (words by embedding only)."""
    if char_embedding_dim <= 0:
        return None
    if num_chars < 3:
        raise ValueError("a character encoder needs the data's character vocabulary (chars)")
    return CharEncoder(num_chars, char_embedding_dim, char_hidden_size, cell)


def real_steps(tokens: Tensor, lengths: Tensor | None) -> Tensor:
    """(B, T) bool: True on each sequence's real (unpadded) steps."""
    if lengths is None:
        return torch.ones_like(tokens, dtype=torch.bool)
    steps = torch.arange(tokens.shape[1], device=tokens.device)
    return steps < lengths.to(tokens.device)[:, None]


class Encoder(nn.Module):
    """Embedding lookup, embedding dropout, then a stacked (bidirectional) RNN.

    Args:
        vocab_size: V.
        embedding_dim: E.
        hidden_size: H, per direction.
        num_layers, cell, nonlinearity, bidirectional, bptt: passed to `RNN`.
        dropout: between recurrent layers (as `torch.nn.RNN`).
        embedding_dropout: on the embeddings, before the first layer.
        padding_idx: the padding id, whose embedding stays zero.
        word_dropout: in training, the chance that a word reads as `unk_idx` (Kiperwasser
            & Goldberg 2016): the model learns to tag or classify from context and spelling
            the words it will meet unseen, instead of trusting their embeddings alone.
        unk_idx: the `<unk>` id, needed when `word_dropout > 0`.
        chars: a `CharEncoder`, whose vector for each word is concatenated to its
            embedding; `forward` then needs the words' characters `chars` (B, T, L).
        fixed_words: the last ids of the vocabulary are words training never sees (added
            from a pretrained file, `Vocab.extended`): their vectors sit in a buffer,
            `fixed_embedding`, that `load_pretrained` fills and no optimiser touches.
        weight_drop: in training, DropConnect on every recurrent matrix `U` (`RNN`).
        variational_dropout: the embedding and between-layer dropouts (and the head's
            `output_dropout` of the LM and tagger) draw one mask per sequence, kept for all
            its steps (Gal & Ghahramani 2016), instead of one per step.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        num_layers: int = 1,
        cell: CellName = "lstm",
        nonlinearity: str = "tanh",
        bidirectional: bool = False,
        dropout: float = 0.0,
        embedding_dropout: float = 0.0,
        padding_idx: int | None = None,
        bptt: str = "manual",
        chars: CharEncoder | None = None,
        word_dropout: float = 0.0,
        unk_idx: int | None = None,
        fixed_words: int = 0,
        weight_drop: float = 0.0,
        variational_dropout: bool = False,
    ) -> None:
        super().__init__()
        if not 0 <= fixed_words < vocab_size:
            raise ValueError(f"fixed_words must be in [0, {vocab_size}), got {fixed_words}")
        if not 0.0 <= word_dropout < 1.0:
            raise ValueError(f"word_dropout must be in [0, 1), got {word_dropout}")
        if word_dropout and unk_idx is None:
            raise ValueError("word_dropout > 0 needs unk_idx, the id words are replaced by")
        self.word_dropout, self.unk_idx, self.padding_idx = word_dropout, unk_idx, padding_idx
        self.embedding = nn.Embedding(
            vocab_size - fixed_words, embedding_dim, padding_idx=padding_idx
        )
        fixed = torch.zeros(fixed_words, embedding_dim) if fixed_words else None
        self.register_buffer("fixed_embedding", fixed)  # saved: a checkpoint needs no file
        # (V,) bool, the pretrained rows load_pretrained(freeze=True) keeps fixed; not saved:
        # a checkpoint's table already holds them, and only training needs the mask.
        self.register_buffer("frozen_rows", None, persistent=False)
        self.embedding_dropout = dropout_layer(embedding_dropout, variational_dropout)
        self.chars = chars
        input_size = embedding_dim + (chars.output_size if chars else 0)
        self.rnn = recurrent.RNN(
            input_size, hidden_size, num_layers, cell, nonlinearity, bidirectional, dropout, bptt,
            weight_drop=weight_drop, variational=variational_dropout,
        )  # fmt: skip

    @property
    def output_size(self) -> int:
        return self.rnn.output_size

    def forward(
        self,
        tokens: Tensor,
        lengths: Tensor | None = None,
        state: State | None = None,
        chars: Tensor | None = None,
    ) -> tuple[Tensor, State]:
        x = self._embed(self._drop_words(tokens))  # (B, T, E)
        if self.chars is not None:
            if chars is None:
                raise ValueError("this encoder spells its words: pass chars (B, T, L)")
            spelled = self.chars(chars, real_steps(tokens, lengths))  # (B, T, 2H_c)
            x = torch.cat((x, spelled), -1)  # (B, T, E + 2H_c)
        return self.rnn(self.embedding_dropout(x), lengths, state)  # (B, T, H*K), final state

    def _embed(self, tokens: Tensor) -> Tensor:
        if self.fixed_embedding is None:
            return self.embedding(tokens)
        trained = self.embedding.num_embeddings
        fixed = (tokens >= trained).unsqueeze(-1)  # (B, T, 1)
        x = self.embedding(tokens.clamp(max=trained - 1))  # fixed words: any row, replaced
        return torch.where(fixed, self.fixed_embedding[(tokens - trained).clamp(min=0)], x)

    def _drop_words(self, tokens: Tensor) -> Tensor:
        if not (self.training and self.word_dropout):
            return tokens
        drop = torch.rand(tokens.shape, device=tokens.device) < self.word_dropout
        if self.padding_idx is not None:
            drop &= tokens != self.padding_idx
        return tokens.masked_fill(drop, self.unk_idx)

    def load_pretrained(self, vectors: Tensor, found: Tensor, freeze: bool = False) -> None:
        """Copy pretrained vectors (V, E) into the rows marked `found` (V,) bool.

        Rows not found keep their random init and are learned. `freeze=True` stops training
        the found rows only (a gradient hook zeroes their gradient), so unseen words still learn.
        The table is then kept out of weight decay (`no_decay_parameters`). The fixed words'
        vectors (`fixed_words`) must all be found: they have no other.
        """
        table = self.embedding.weight
        trained = table.shape[0]
        fixed = 0 if self.fixed_embedding is None else self.fixed_embedding.shape[0]
        if vectors.shape != (trained + fixed, table.shape[1]):
            raise ValueError(
                f"pretrained vectors have shape {tuple(vectors.shape)}, the embedding table "
                f"({trained + fixed}, {table.shape[1]})"
            )
        if not found[trained:].all():
            raise ValueError("every fixed word needs its pretrained vector")
        found = found[:trained]
        with torch.no_grad():
            table[found] = vectors[:trained][found].to(table)
            if fixed:
                self.fixed_embedding.copy_(vectors[trained:])
        if freeze:
            self.frozen_rows = found.to(table.device)
            self.embedding.weight.register_hook(
                lambda grad: grad.masked_fill(self.frozen_rows.unsqueeze(1), 0.0)
            )

    def no_decay_parameters(self) -> list[nn.Parameter]:
        """Parameters weight decay must leave alone: a table with frozen rows, which decay
        would move though their gradient is 0 (Adam adds the decay to the gradient,
        AdamW shrinks the weights directly)."""
        return [self.embedding.weight] if self.frozen_rows is not None else []


class LanguageModel(nn.Module):
    """Recurrent LM: `logits_t = V h_t` over a unidirectional encoder.

    Args:
        vocab_size: V.
        tie_weights: share the input embedding with the output layer `V` (Press & Wolf
            2017; Inan et al. 2017); needs `hidden_size == embedding_dim`.
        output_dropout: dropout on the top layer's outputs before `V` (Zaremba et al. 2014).
        **encoder: the `Encoder` arguments.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        tie_weights: bool = False,
        output_dropout: float = 0.0,
        **encoder,
    ) -> None:
        super().__init__()
        if encoder.get("bidirectional"):
            raise ValueError(
                "a language model must be unidirectional (bidirectional=False): "
                "a backward direction would read the words it must predict"
            )
        self.encoder = Encoder(vocab_size, embedding_dim, hidden_size, **encoder)
        self.output_dropout = dropout_layer(output_dropout, encoder.get("variational_dropout"))
        self.V = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            if hidden_size != embedding_dim:
                raise ValueError(
                    "tie_weights needs hidden_size == embedding_dim, got "
                    f"hidden_size={hidden_size}, embedding_dim={embedding_dim}"
                )
            self.V.weight = self.encoder.embedding.weight
        self.reset_output()

    @torch.no_grad()
    def reset_output(self, scale: float = 0.1) -> None:
        """Start from near-uniform predictions, as pytorch/examples' word_language_model.

        `nn.Embedding` draws from N(0, 1): tied to the output layer, that gives logits of
        standard deviation about sqrt(H) and a first loss of ~50 nats instead of log V,
        which SGD at the usual learning rates cannot recover from.
        """
        nn.init.uniform_(self.encoder.embedding.weight, -scale, scale)
        nn.init.uniform_(self.V.weight, -scale, scale)
        nn.init.zeros_(self.V.bias)

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """`tokens` (B, T) -> next-word logits (B, T, V) and the state after the last step."""
        logits, state, _ = self.forward_with_outputs(tokens, state)
        return logits, state

    def forward_with_outputs(self, tokens: Tensor, state: State | None = None):
        """`forward`, and the top layer's outputs (B, T, H) before and after
        `output_dropout`, which activation regularisation penalises (`LanguageModelTask`)."""
        out, state = self.encoder(tokens, state=state)  # (B, T, H)
        dropped = self.output_dropout(out)
        return self.V(dropped), state, (out, dropped)

    def step(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One step for generation: `ids` (B,) -> logits (B, V) and the new state."""
        x = self.encoder.embedding_dropout(self.encoder.embedding(ids))  # (B, E)
        out, state = self.encoder.rnn.step(x, state)  # (B, H)
        return self.V(self.output_dropout(out)), state


class FeedForwardLM(nn.Module):
    """Feed-forward N-gram LM: `P(w_t | w_{t-N} .. w_{t-1})` from concatenated embeddings.

        e = [E w_{t-N}; ...; E w_{t-1}]      (N*E)
        h = tanh(W e + b)                     (H)
        logits = V h                          (V)

    Its "state" is the last N words seen, so it reads the same streams of windows as the
    recurrent LMs (truncated BPTT carries the state across windows) and plugs into the
    same generation code. At the very start the context is filled with `start_id`.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        context: int = 4,
        dropout: float = 0.0,
        start_id: int = 0,
    ) -> None:
        super().__init__()
        if context < 1:
            raise ValueError(f"context must be >= 1 word, got {context}")
        self.context, self.start_id = context, start_id
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.hidden = nn.Linear(context * embedding_dim, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.V = nn.Linear(hidden_size, vocab_size)

    def forward(self, tokens: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """`tokens` (B, T) -> logits (B, T, V) and the last N tokens (B, N) as the state."""
        B, T = tokens.shape
        if state is None:
            state = tokens.new_full((B, self.context), self.start_id)
        seq = torch.cat((state, tokens), 1)  # (B, N + T)
        windows = seq.unfold(1, self.context, 1)[:, 1:]  # (B, T, N): the N words up to t
        e = self.dropout(self.embedding(windows).flatten(2))  # (B, T, N*E)
        h = self.dropout(torch.tanh(self.hidden(e)))  # (B, T, H)
        return self.V(h), seq[:, -self.context :]

    def step(self, ids: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logits, state = self(ids.unsqueeze(1), state)
        return logits.squeeze(1), state


class Tagger(nn.Module):
    """A softmax over tags at every step: `logits_t = V [h_t_fwd; h_t_bwd]`.

    Args:
        vocab_size, num_tags: V and C.
        output_dropout: on the encoder's outputs before `V`.
        num_chars: size of the character vocabulary; with `char_embedding_dim > 0` a
            `CharEncoder` adds a spelling-based vector to every word embedding.
        char_embedding_dim, char_hidden_size: the `CharEncoder` sizes (0 = no encoder).
        **encoder: the `Encoder` arguments.
    """

    def __init__(
        self,
        vocab_size: int,
        num_tags: int,
        output_dropout: float = 0.0,
        num_chars: int = 0,
        char_embedding_dim: int = 0,
        char_hidden_size: int = 50,
        **encoder,
    ) -> None:
        super().__init__()
        cell = encoder.get("cell", "lstm")
        chars = char_encoder(num_chars, char_embedding_dim, char_hidden_size, cell)
        self.encoder = Encoder(vocab_size, chars=chars, **encoder)
        self.output_dropout = dropout_layer(output_dropout, encoder.get("variational_dropout"))
        self.V = nn.Linear(self.encoder.output_size, num_tags)

    def forward(
        self, tokens: Tensor, lengths: Tensor | None = None, chars: Tensor | None = None
    ) -> Tensor:
        """`tokens` (B, T) [+ `chars` (B, T, L)] -> tag logits (B, T, C)."""
        out, _ = self.encoder(tokens, lengths, chars=chars)  # (B, T, H*K)
        return self.V(self.output_dropout(out))


class Classifier(nn.Module):
    """Document classifier over the encoder's final states.

    The features are the top layer's forward state at each document's last real word and,
    when bidirectional, its backward state at the first word, (B, H*K); a feed-forward
    network `Linear -> tanh -> dropout -> Linear` maps them to class logits.

    Args:
        vocab_size, num_classes: V and C.
        classifier_hidden: hidden units of the feed-forward classifier.
        output_dropout: before each layer of the classifier.
        num_chars, char_embedding_dim, char_hidden_size: an optional `CharEncoder`, as
            in `Tagger` (spelling carries much of spam: digits, capitals, currency).
        max_pool: also concatenate the element-wise max of the top layer's outputs over the
            real words (Conneau et al. 2017), (B, 2*H*K) in all: a cue anywhere in a long
            message reaches the classifier without having to survive to either end.
        **encoder: the `Encoder` arguments.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        classifier_hidden: int = 64,
        output_dropout: float = 0.0,
        num_chars: int = 0,
        char_embedding_dim: int = 0,
        char_hidden_size: int = 50,
        max_pool: bool = False,
        **encoder,
    ) -> None:
        super().__init__()
        cell = encoder.get("cell", "lstm")
        chars = char_encoder(num_chars, char_embedding_dim, char_hidden_size, cell)
        self.encoder = Encoder(vocab_size, chars=chars, **encoder)
        self.max_pool = max_pool
        num_features = self.encoder.output_size * (2 if max_pool else 1)
        self.head = nn.Sequential(
            nn.Dropout(output_dropout),
            nn.Linear(num_features, classifier_hidden),
            nn.Tanh(),
            nn.Dropout(output_dropout),
            nn.Linear(classifier_hidden, num_classes),
        )

    def features(
        self, tokens: Tensor, lengths: Tensor | None = None, chars: Tensor | None = None
    ) -> Tensor:
        out, state = self.encoder(tokens, lengths, chars=chars)  # (B, T, H*K)
        h_n = state[0] if isinstance(state, tuple) else state  # (L*K, B, H)
        K = self.encoder.rnn.num_directions
        # Top layer's rows: forward (at each last real word), then backward (at the first).
        final = torch.cat(tuple(h_n[-K:]), dim=-1)  # (B, H*K)
        if not self.max_pool:
            return final
        padded = ~real_steps(tokens, lengths)[..., None]  # (B, T, 1)
        return torch.cat((final, out.masked_fill(padded, float("-inf")).amax(1)), -1)

    def forward(
        self, tokens: Tensor, lengths: Tensor | None = None, chars: Tensor | None = None
    ) -> Tensor:
        """`tokens` (B, T) [+ `chars` (B, T, L)] -> class logits (B, C)."""
        return self.head(self.features(tokens, lengths, chars))
