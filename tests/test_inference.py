"""Batched prediction (`rnn_tasks.inference`) against one text at a time and exact formulas;
the text pipeline the data module builds is the one the task predicts with."""

import math

import pytest
import torch

from rnn_tasks.data import ClassificationDataModule, LMDataModule, TaggingDataModule
from rnn_tasks.inference import by_length
from rnn_tasks.tasks import ClassificationTask, LanguageModelTask, TaggingTask
from rnn_tasks.text.chars import pad_chars

MODEL = dict(cell="gru", embedding_dim=12, hidden_size=10, bidirectional=True,
             char_embedding_dim=6, char_hidden_size=5)  # fmt: skip
TEXTS = ["WINNER!! Claim your £1000 prize now", "ok see you at 5", "", "Call 08712460324",
         "sorry , I 'll call later", "a"]  # fmt: skip


def built(datamodule, task_class, **kwargs):
    datamodule.setup("fit")
    return task_class(**datamodule.metadata(), **kwargs).eval(), datamodule


@pytest.fixture(scope="module")
def cls():
    torch.manual_seed(0)
    return built(ClassificationDataModule(builtin=True, batch_size=8), ClassificationTask,
                 model=MODEL, lowercase=True)  # fmt: skip


@pytest.fixture(scope="module")
def pos():
    torch.manual_seed(0)
    return built(TaggingDataModule(builtin=True, batch_size=8), TaggingTask, model=MODEL)


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    data = LMDataModule(max_lines=200, batch_size=4)
    model = dict(cell="lstm", embedding_dim=12, hidden_size=10)
    return built(data, LanguageModelTask, model=model)


def test_batches_group_texts_of_similar_length():
    batches = list(by_length([3, 9, 1, 7, 5], 2))
    assert batches == [[1, 3], [4, 0], [2]]


def test_the_task_reads_text_through_the_data_modules_pipeline(cls, pos, lm):
    for task, data in (cls, pos, lm):
        assert task.pipeline == data.pipeline


def test_a_classified_list_equals_each_text_alone(cls):
    task, _ = cls
    batched = task.predict_proba(TEXTS)
    for text, probs in zip(TEXTS, batched, strict=True):
        alone = task.predict_proba(text)
        assert probs.keys() == alone.keys()
        assert all(math.isclose(probs[k], alone[k], abs_tol=1e-6) for k in probs)
    assert [label for label, _ in task.predict(TEXTS)] == [task.predict(t)[0] for t in TEXTS]


def test_a_tagged_list_equals_each_sentence_alone(pos):
    task, data = pos
    sentences = data._records["validation"]["tokens"][:40]
    batched = task.predict(sentences)
    assert batched == [task.predict([s])[0] for s in sentences]
    assert [w for w, _ in batched[0]] == sentences[0]
    assert task.predict(["", "I like tea ."])[0] == []


def test_tag_probabilities_are_the_softmax_of_the_models_output(pos):
    task, data = pos
    words = data._records["validation"][0]["tokens"]
    tagged = task.predict([words], probs=True)[0]
    ids = torch.tensor([task.pipeline.ids(words)])
    chars = pad_chars([task.pipeline.spell(words)], len(words))
    with torch.no_grad():
        expected = torch.softmax(task.model(ids, chars=chars)[0], -1)
    for (_, tag, probs), row in zip(tagged, expected, strict=True):
        assert max(probs, key=probs.get) == tag
        assert torch.allclose(torch.tensor([probs[t] for t in task.tags]), row, atol=1e-6)


def test_prob_is_the_softmax_entry_and_its_rank(lm):
    task, _ = lm
    context = "the company said"
    words = ["the", "<eos>", "of"]
    result = task.prob(words, context)
    ids = [task.vocab.index("<eos>"), *task.vocab.encode(context.split())]
    with torch.no_grad():
        probs = torch.softmax(task.model(torch.tensor([ids]))[0][0, -1], -1)
    for word in words:
        p = probs[task.vocab.index(word)]
        assert math.isclose(result[word]["p"], float(p), rel_tol=1e-5)
        assert result[word]["rank"] == int((probs > p).sum()) + 1
    assert task.prob("the", context) == {"the": result["the"]}
    top, _ = task.next_words(context, k=1)[0]
    assert task.prob(top, context)[top]["rank"] == 1


def test_a_word_the_lm_does_not_know_is_said_so(lm):
    task, _ = lm
    result = task.prob(["fish-and-chips-xyz", "<unk>"], "thanks for all the")
    assert result["fish-and-chips-xyz"] == {"in_vocabulary": False, "p": None, "rank": None}
    assert result["<unk>"]["in_vocabulary"]  # PTB writes <unk>: a word the model knows


def test_score_is_the_sum_of_the_next_word_log_probabilities(lm):
    task, _ = lm
    texts = ["the company said", "it is", "xyzzy the"]
    scores = task.score(texts)
    for text, score in zip(texts, scores, strict=True):
        ids = [task.vocab.index("<eos>"), *task.pipeline.ids(text.split())]
        targets = [*ids[1:], task.vocab.index("<eos>")]
        total = 0.0
        for i, target in enumerate(targets):  # one word at a time, from the sentence start
            with torch.no_grad():
                logits = task.model(torch.tensor([ids[: i + 1]]))[0][0, -1]
            total += float(torch.log_softmax(logits, -1)[target])
        assert math.isclose(score["logprob"], total, rel_tol=1e-5)
        assert score["tokens"] == len(targets)
        assert math.isclose(score["ppl"], math.exp(-total / len(targets)), rel_tol=1e-5)
    assert scores[2]["unknown"] == ["xyzzy"]
    assert task.score("it is") == scores[1]
