"""The Lightning tasks on synthetic batches: losses, TBPTT, metrics, overfitting, predict."""

import math

import pytest
import torch
import torch.nn.functional as F

from rnn_tasks.tasks import ClassificationTask, LanguageModelTask, TaggingTask
from rnn_tasks.text import Vocab

WORDS = [f"w{i}" for i in range(95)]
RNN = dict(type="rnn", cell="lstm", embedding_dim=16, hidden_size=32, num_layers=1)


def lm_task(**model):
    vocab = Vocab(["<unk>", "<eos>", *WORDS], pad=None)
    return LanguageModelTask(vocab.to_dict(), {**RNN, **model}, lr=1.0)


FFNN = dict(type="ffnn", context=3, embedding_dim=8, hidden_size=16)


def windows(stream, B, T):
    rows = stream[: len(stream) // B * B].view(B, -1)
    for i in range(0, rows.shape[1] - 1, T):
        n = min(T, rows.shape[1] - 1 - i)
        yield {"input": rows[:, i : i + n], "target": rows[:, i + 1 : i + 1 + n]}


@pytest.mark.parametrize("model", [RNN, FFNN], ids=["lstm", "ffnn"])
def test_tbptt_windows_end_to_end_equal_one_full_run(model):
    torch.manual_seed(0)
    vocab = Vocab(["<unk>", "<eos>", *WORDS], pad=None)
    task = LanguageModelTask(vocab.to_dict(), model, lr=1.0).eval()
    stream = torch.randint(0, 97, (3 * 40,))
    rows = stream.view(3, -1)  # Full-sequence reference: one forward over each whole row.
    logits, _ = task.model(rows[:, :-1])
    reference = F.cross_entropy(logits.reshape(-1, 97), rows[:, 1:].reshape(-1))
    task.on_validation_epoch_start()
    with torch.no_grad():
        for batch in windows(stream, 3, 7):
            task._step(batch, "val")
    nll = task.nll["val_nll"].compute()
    torch.testing.assert_close(nll, reference, atol=1e-5, rtol=1e-5)


def test_second_window_sees_the_first():
    torch.manual_seed(0)
    task = lm_task().eval().double()  # near-uniform at init: the effect is ~1e-5 nats
    a = torch.randint(0, 97, (2, 5))
    b = a.clone()
    b[:, 0] = (b[:, 0] + 1) % 97  # change only the first window
    second = {"input": torch.randint(0, 97, (2, 5)), "target": torch.randint(0, 97, (2, 5))}
    losses = []
    for first in (a, b):
        task.on_validation_epoch_start()
        with torch.no_grad():
            task._step({"input": first, "target": first}, "val")
            losses.append(task._step(second, "val"))
    assert abs(losses[0] - losses[1]) > 1e-9  # float64 noise is ~1e-15
    # and a new epoch starts from a fresh state
    task.on_validation_epoch_start()
    assert task._states["val"] is None


def test_perplexity_is_exp_of_total_nll_over_total_tokens():
    torch.manual_seed(0)
    task = lm_task().eval()
    logged = {}
    task.log = lambda name, value, **kw: logged.__setitem__(name, float(value))
    batches = [
        {"input": torch.randint(0, 97, (2, n)), "target": torch.randint(0, 97, (2, n))}
        for n in (7, 7, 3)
    ]
    task.on_test_epoch_start()
    total, count = 0.0, 0
    state = None
    with torch.no_grad():
        for batch in batches:
            task._step(batch, "test")
            logits, state = task.model(batch["input"], state)
            nll = F.cross_entropy(
                logits.reshape(-1, 97), batch["target"].reshape(-1), reduction="sum"
            )
            total, count = total + float(nll), count + batch["target"].numel()
    task.on_test_epoch_end()
    assert logged["test/ppl"] == pytest.approx(math.exp(total / count), rel=1e-5)


def test_lm_overfits_a_tiny_stream():
    torch.manual_seed(0)
    task = lm_task(hidden_size=64)
    opt = torch.optim.Adam(task.parameters(), lr=1e-2)
    batch = {"input": torch.randint(0, 97, (4, 8))}
    batch["target"] = torch.roll(batch["input"], -1, 1)
    first = None
    for _ in range(200):
        task._states = {}
        loss = task._step(batch, "train")
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first == pytest.approx(math.log(97), abs=0.3)
    assert loss.item() < 0.1


def tagging_batch(g):
    tokens = torch.randint(2, 50, (4, 6), generator=g)
    lengths = torch.tensor([6, 4, 3, 1])
    tags = tokens % 5
    pad = torch.arange(6) >= lengths[:, None]
    tokens[pad], tags[pad] = 0, -100
    return {"tokens": tokens, "lengths": lengths, "tags": tags}


def test_tagger_starts_near_log_c_and_overfits():
    torch.manual_seed(0)
    vocab = Vocab(["<pad>", "<unk>", *WORDS])
    task = TaggingTask(vocab.to_dict(), list("ABCDE"), {**RNN, "bidirectional": True})
    batch = tagging_batch(torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(task.parameters(), lr=1e-2)
    task.log = lambda *a, **k: None
    losses = []
    for _ in range(150):
        loss = task._step(batch, "train")
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[0] == pytest.approx(math.log(5), abs=0.3)
    assert losses[-1] < 0.05
    words = [vocab.itos[int(i)] for i in batch["tokens"][0]]
    assert [t for _, t in task.predict([words])[0]] == [
        "ABCDE"[int(i) % 5] for i in batch["tokens"][0]
    ]


def test_per_tag_accuracy_is_logged_for_the_tags_the_split_has():
    torch.manual_seed(0)
    vocab = Vocab(["<pad>", "<unk>", *WORDS])
    task = TaggingTask(vocab.to_dict(), list("ABCDE"), {**RNN, "bidirectional": True})
    batch = tagging_batch(torch.Generator().manual_seed(0))
    batch["tags"] = batch["tags"].where(batch["tags"] < 2, batch["tags"] % 2)  # A and B only
    logged = {}
    task.log = lambda name, value, **kwargs: logged.__setitem__(name, value)
    task._step(batch, "val")
    task._log_breakdown("val")
    per_tag = {k: float(v) for k, v in logged.items() if k.removeprefix("val/acc_") in "ABCDE"}
    predicted = task.model(batch["tokens"], batch["lengths"]).argmax(-1)
    real = batch["tags"] != -100
    expected = {
        f"val/acc_{tag}": float((predicted[gold] == i).float().mean())
        for i, tag in enumerate("AB")
        if (gold := real & (batch["tags"] == i)).any()
    }
    assert per_tag == pytest.approx(expected) and set(expected) == {"val/acc_A", "val/acc_B"}


def test_classifier_overfits_and_balanced_weights():
    torch.manual_seed(0)
    vocab = Vocab(["<pad>", "<unk>", *WORDS])
    task = ClassificationTask(
        vocab.to_dict(),
        ["ham", "spam"],
        {**RNN, "bidirectional": True},
        class_counts=[30, 10],
        class_weighting="balanced",
    )
    torch.testing.assert_close(task.class_weight, torch.tensor([40 / 60, 40 / 20]))
    assert task.positive == 1
    g = torch.Generator().manual_seed(0)
    batch = tagging_batch(g)
    batch = {
        "tokens": batch["tokens"],
        "lengths": batch["lengths"],
        "label": torch.tensor([0, 1, 1, 0]),
    }
    task.log = lambda *a, **k: None
    opt = torch.optim.Adam(task.parameters(), lr=1e-2)
    for _ in range(100):
        loss = task._step(batch, "train")
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


@pytest.mark.parametrize("zero_digits", [False, True])
def test_predict_looks_words_up_as_the_data_did(zero_digits):
    torch.manual_seed(0)
    vocab = Vocab(["<pad>", "<unk>", "call", "00000"])
    task = ClassificationTask(
        vocab.to_dict(), ["ham", "spam"], {**RNN, "bidirectional": True}, zero_digits=zero_digits
    ).eval()
    number = vocab.index("00000" if zero_digits else "<unk>")
    with torch.no_grad():
        logits = task.model(torch.tensor([[vocab.index("call"), number]]))[0]
    probs = task.predict_proba("CALL 08712")  # lowercase=True by default
    assert [probs["ham"], probs["spam"]] == pytest.approx(torch.softmax(logits, -1).tolist())


def test_bad_task_arguments_name_the_choices():
    vocab = Vocab(["<pad>", "<unk>", *WORDS]).to_dict()
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TaggingTask(vocab, ["A", "B"], RNN, optimizer="rmsprop")
    with pytest.raises(ValueError, match="class_weighting must be one of"):
        ClassificationTask(vocab, ["a", "b"], RNN, class_weighting="inverse")
    with pytest.raises(ValueError, match="positive_label must be one of"):
        ClassificationTask(vocab, ["a", "b"], RNN, positive_label="spam")
    with pytest.raises(ValueError, match="language model only"):
        TaggingTask(vocab, ["A", "B"], {"type": "ffnn", "embedding_dim": 4, "hidden_size": 4})
    with pytest.raises(ValueError, match="applies to task=lm only"):
        TaggingTask(vocab, ["A", "B"], {**RNN, "tie_weights": True})


@pytest.mark.parametrize(
    "make",
    [
        lambda vocab, model: TaggingTask(vocab.to_dict(), list("ABC"), model),
        lambda vocab, model: ClassificationTask(vocab.to_dict(), ["ham", "spam"], model),
    ],
)
def test_word_dropout_reads_as_the_task_vocabularys_unk(make):
    vocab = Vocab(["<pad>", "<unk>", *WORDS])
    task = make(vocab, {**RNN, "bidirectional": True, "word_dropout": 0.25})
    encoder = task.model.encoder
    assert (encoder.word_dropout, encoder.unk_idx, encoder.padding_idx) == (
        0.25,
        vocab.unk_id,
        vocab.pad_id,
    )


def test_lr_milestones_decay_at_those_epochs():
    vocab = Vocab(["<pad>", "<unk>", "<eos>", *WORDS]).to_dict()
    task = LanguageModelTask(vocab, RNN, lr=1.0, lr_decay=0.5, lr_milestones=[2, 3])
    sched = task.configure_optimizers()["lr_scheduler"]
    opt = sched["scheduler"].optimizer
    lrs = []
    for _ in range(5):  # Lightning steps an "epoch" scheduler once per epoch
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched["scheduler"].step()
    assert sched["interval"] == "epoch"
    assert lrs == [1.0, 1.0, 0.5, 0.25, 0.25]


@pytest.mark.parametrize("bad", [[3, 2], [0, 4], [2, 2]])
def test_lr_milestones_must_be_increasing_epochs(bad):
    vocab = Vocab(["<pad>", "<unk>", "<eos>", *WORDS]).to_dict()
    with pytest.raises(ValueError, match="lr_milestones"):
        LanguageModelTask(vocab, RNN, lr_milestones=bad)


def test_lm_names_the_words_it_reads_as_unk_and_checks_k(caplog):
    task = lm_task()
    with caplog.at_level("WARNING", logger="rnn_tasks.tasks.lm"):
        task.next_words("w1 Thanks w2", k=3)
    assert "read as <unk>: Thanks (the model's words are case-sensitive)" in caplog.text
    caplog.clear()
    task.next_words("w1 w2 <unk>", k=3)  # the literal <unk> is a word of the vocabulary
    assert caplog.text == ""
    for k in (0, 2.5):
        with pytest.raises(ValueError, match="k must be a whole number >= 1"):
            task.next_words("w1", k=k)


def test_lm_warns_when_validation_is_worse_than_uniform_guessing(caplog):
    task = lm_task()
    with caplog.at_level("WARNING", logger="rnn_tasks.tasks.lm"):
        task._warn_if_diverged(math.log(len(task.vocab)) - 0.01)
        assert caplog.text == ""
        task._warn_if_diverged(math.log(len(task.vocab)) + 0.01)
    assert "training diverged. Lower task.lr (sgd at lr 1)" in caplog.text


def test_load_task_says_when_a_file_is_not_a_checkpoint(tmp_path):
    from rnn_tasks.tasks import load_task

    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(ValueError, match=r"metrics.json is not a checkpoint that torch.load"):
        load_task(tmp_path / "metrics.json")
