"""Deep ensembles: averaged probabilities, the checks on what members share."""

import pytest
import torch
from torch import nn

from rnn_tasks.tasks import ClassificationTask, LanguageModelTask, TaggingTask, ensemble
from rnn_tasks.tasks.ensemble import ProbabilityAverage
from rnn_tasks.text import Vocab

WORDS = ["win", "cash", "now", "see", "you", "later"]
RNN = dict(type="rnn", cell="gru", embedding_dim=8, hidden_size=8, bidirectional=True)


def test_probability_average_is_the_log_of_the_mean_softmax():
    torch.manual_seed(0)
    members = [nn.Linear(4, 3) for _ in range(3)]
    x = torch.randn(5, 4)
    out = ProbabilityAverage(members)(x)
    expected = torch.stack([m(x).softmax(-1) for m in members]).mean(0)
    torch.testing.assert_close(out.exp(), expected)
    torch.testing.assert_close(out.softmax(-1), expected)  # it stands in for logits


def cls_task(seed, vocab=None, **kwargs):
    torch.manual_seed(seed)
    vocab = vocab or Vocab(["<pad>", "<unk>", *WORDS])
    chars = Vocab.build(list(w) for w in WORDS)
    return ClassificationTask(
        vocab.to_dict(), ["ham", "spam"], {**RNN, **kwargs}, chars=chars.to_dict()
    ).eval()


def test_ensemble_predicts_the_members_mean_probability():
    members = [cls_task(0), cls_task(1, char_embedding_dim=4, char_hidden_size=4)]
    combined = ensemble(members)
    text = "WIN cash now, see you"
    probs = combined.predict_proba(text)
    for label in ("ham", "spam"):
        mean = sum(m.predict_proba(text)[label] for m in members) / 2
        assert probs[label] == pytest.approx(mean, rel=1e-5)
    assert combined.predict_proba(text) != members[0].predict_proba(text)


def test_one_member_ensemble_tags_as_that_task():
    torch.manual_seed(0)
    vocab = Vocab(["<pad>", "<unk>", *WORDS])
    task = TaggingTask(vocab.to_dict(), ["A", "B", "C"], RNN).eval()
    assert ensemble([task]).predict("see you later") == task.predict("see you later")


def test_members_must_read_their_data_alike():
    other = Vocab(["<pad>", "<unk>", *reversed(WORDS)])
    with pytest.raises(ValueError, match="task 1 reads its data unlike task 0: vocab differ"):
        ensemble([cls_task(0), cls_task(1, vocab=other)])
    vocab = Vocab(["<pad>", "<unk>", *WORDS])
    tagger = TaggingTask(vocab.to_dict(), ["A", "B"], RNN)
    with pytest.raises(ValueError, match="task 1 is a TaggingTask"):
        ensemble([cls_task(0), tagger])
    lm_vocab = Vocab(["<unk>", "<eos>", *WORDS], pad=None).to_dict()
    lm = LanguageModelTask(lm_vocab, {**RNN, "bidirectional": False})
    with pytest.raises(ValueError, match="not LanguageModelTask"):
        ensemble([lm])
    with pytest.raises(ValueError, match="at least one"):
        ensemble([])


def test_evaluate_names_the_checkpoints_that_cannot_be_averaged(monkeypatch):
    from omegaconf import OmegaConf

    import rnn_tasks.evaluate

    vocab = Vocab(["<pad>", "<unk>", *WORDS]).to_dict()
    saved = {"a.ckpt": cls_task(0), "b.ckpt": TaggingTask(vocab, ["A", "B"], RNN)}
    monkeypatch.setattr(rnn_tasks.evaluate, "load_task", saved.__getitem__)
    cfg = OmegaConf.create({"split": "test", "ckpt_path": ["a.ckpt", "b.ckpt"], "data": {}})
    with pytest.raises(ValueError, match=r"ckpt_path=\['a.ckpt', 'b.ckpt'\]: task 1 is a Tag"):
        rnn_tasks.evaluate.evaluate(cfg)
