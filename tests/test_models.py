"""The task models (pure torch): heads, padding, final-state features, the N-gram LM."""

import pytest
import torch

from rnn_tasks.models import Classifier, Encoder, FeedForwardLM, LanguageModel, Tagger

V, E, H, B, T = 99, 16, 32, 13, 7
ENC = dict(embedding_dim=E, hidden_size=H, cell="gru")


def padded_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    tokens = torch.randint(1, V, (B, T), generator=g)
    tokens[torch.arange(T) >= lengths[:, None]] = 0  # pad id 0
    return tokens, lengths


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_tagger_rows_do_not_depend_on_padding(cell):
    torch.manual_seed(0)
    model = Tagger(
        V,
        5,
        padding_idx=0,
        embedding_dim=E,
        hidden_size=H,
        cell=cell,
        bidirectional=True,
        num_layers=2,
    ).eval()
    tokens, lengths = padded_batch()
    logits = model(tokens, lengths)
    for i in range(B):
        n = int(lengths[i])
        alone = model(tokens[i : i + 1, :n], lengths[i : i + 1])
        torch.testing.assert_close(logits[i, :n], alone[0], atol=1e-5, rtol=1e-5)
        # more padding changes nothing either
        extra = torch.cat((tokens[i : i + 1], torch.zeros(1, 3, dtype=torch.long)), 1)
        torch.testing.assert_close(
            model(extra, lengths[i : i + 1])[0, :n], alone[0], atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_classifier_features_are_forward_last_and_backward_first(cell):
    torch.manual_seed(0)
    model = Classifier(
        V,
        2,
        padding_idx=0,
        embedding_dim=E,
        hidden_size=H,
        cell=cell,
        bidirectional=True,
        num_layers=2,
    ).eval()
    tokens, lengths = padded_batch()
    feats = model.features(tokens, lengths)
    out, _ = model.encoder(tokens, lengths)  # (B, T, 2H): top layer, both directions
    for i in range(B):
        last = int(lengths[i]) - 1
        torch.testing.assert_close(feats[i, :H], out[i, last, :H])  # forward at last word
        torch.testing.assert_close(feats[i, H:], out[i, 0, H:])  # backward at first word
    logits = model(tokens, lengths)
    for i in range(B):
        alone = model(tokens[i : i + 1, : lengths[i]], lengths[i : i + 1])
        torch.testing.assert_close(logits[i], alone[0], atol=1e-5, rtol=1e-5)


def test_classifier_max_pool_adds_the_max_over_real_words():
    torch.manual_seed(0)
    model = Classifier(
        V, 2, padding_idx=0, embedding_dim=E, hidden_size=H, bidirectional=True, max_pool=True
    ).eval()
    tokens, lengths = padded_batch()
    feats = model.features(tokens, lengths)  # (B, 4H): final states, then the max
    out, _ = model.encoder(tokens, lengths)
    assert feats.shape == (B, 4 * H)
    for i in range(B):
        n = int(lengths[i])
        torch.testing.assert_close(feats[i, :H], out[i, n - 1, :H])
        torch.testing.assert_close(feats[i, 2 * H :], out[i, :n].amax(0))  # padding excluded
    assert model.head[1].in_features == 4 * H


def test_language_model_step_matches_forward_and_ties_weights():
    torch.manual_seed(0)
    model = LanguageModel(V, E, E, tie_weights=True, cell="lstm", num_layers=2).eval()
    assert model.V.weight is model.encoder.embedding.weight
    tokens = torch.randint(0, V, (3, T))
    logits, _ = model(tokens)
    state = None
    for t in range(T):
        step_logits, state = model.step(tokens[:, t], state)
        torch.testing.assert_close(step_logits, logits[:, t], atol=1e-5, rtol=1e-5)


def test_language_model_rejects_bad_settings():
    with pytest.raises(ValueError, match="tie_weights needs hidden_size == embedding_dim"):
        LanguageModel(V, E, H, tie_weights=True)
    with pytest.raises(ValueError, match="unidirectional"):
        LanguageModel(V, E, H, bidirectional=True)


def test_feedforward_lm_uses_exactly_the_last_n_words():
    torch.manual_seed(0)
    N = 3
    model = FeedForwardLM(V, E, H, context=N, start_id=1).eval()
    tokens = torch.randint(2, V, (2, T))
    logits, state = model(tokens)
    seq = torch.cat((torch.ones(2, N, dtype=torch.long), tokens), 1)
    for t in range(T):
        ctx = seq[:, t + 1 : t + 1 + N]  # the N words up to and including tokens[:, t]
        e = model.embedding(ctx).flatten(1)
        expect = model.V(torch.tanh(model.hidden(e)))
        torch.testing.assert_close(logits[:, t], expect)
    assert torch.equal(state, tokens[:, -N:])
    # windows laid end to end with the carried state equal one long window
    first, s = model(tokens[:, :4])
    second, _ = model(tokens[:, 4:], s)
    torch.testing.assert_close(torch.cat((first, second), 1), logits)


def test_initial_loss_is_near_log_num_classes():
    torch.manual_seed(0)
    C = 17
    model = Tagger(V, C, embedding_dim=E, hidden_size=H, cell="lstm", bidirectional=True)
    tokens, lengths = padded_batch()
    logits = model(tokens, lengths)
    mask = torch.arange(T) < lengths[:, None]
    loss = torch.nn.functional.cross_entropy(logits[mask], torch.randint(0, C, (int(mask.sum()),)))
    assert abs(loss.item() - torch.log(torch.tensor(float(C)))) < 0.15


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("tie", [False, True])
def test_language_model_starts_near_uniform(cell, tie):
    # log V is the loss of uniform predictions; N(0, 1) embeddings tied to the output
    # layer start tens of nats above it, and training never recovers.
    torch.manual_seed(0)
    vocab = 2000
    model = LanguageModel(vocab, 64, 64, tie_weights=tie, cell=cell, num_layers=2)
    tokens = torch.randint(0, vocab, (B, T))
    logits, _ = model(tokens)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), tokens.reshape(-1))
    assert abs(loss.item() - torch.log(torch.tensor(float(vocab)))) < 0.1


def test_pretrained_rows_are_copied_and_frozen_rows_stay():
    torch.manual_seed(0)
    enc = Encoder(10, 4, 6)
    vectors = torch.randn(10, 4)
    found = torch.zeros(10, dtype=torch.bool)
    found[[2, 5]] = True
    before = enc.embedding.weight.detach().clone()
    enc.load_pretrained(vectors, found, freeze=True)
    torch.testing.assert_close(enc.embedding.weight[found], vectors[found])
    torch.testing.assert_close(enc.embedding.weight[~found], before[~found])
    out, _ = enc(torch.tensor([[2, 3, 5, 7]]))
    out.sum().backward()
    grad = enc.embedding.weight.grad
    assert torch.all(grad[found] == 0) and grad[3].abs().sum() > 0
