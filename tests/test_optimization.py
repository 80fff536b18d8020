"""The optimiser settings live in one place: `configs/optimizer/*.yaml` for runs, the task
classes' `optimization` for Python; each task takes them as keywords and saves them."""

from pathlib import Path

import pytest
import yaml

from rnn_tasks.tasks import ClassificationTask, LanguageModelTask, TaggingTask
from rnn_tasks.tasks.base import RecurrentTask
from rnn_tasks.text import Vocab

CONFIGS = Path(__file__).parents[1] / "configs" / "optimizer"
VOCAB = Vocab(["<pad>", "<unk>", "a", "b"]).to_dict()
MODEL = dict(type="rnn", cell="gru", embedding_dim=4, hidden_size=4)


def tasks(**optimization):
    return [
        TaggingTask(VOCAB, ["A", "B"], {**MODEL, "bidirectional": True}, **optimization),
        ClassificationTask(
            VOCAB, ["ham", "spam"], {**MODEL, "bidirectional": True}, **optimization
        ),  # fmt: skip
        LanguageModelTask(
            Vocab(["<unk>", "a", "<eos>"], pad=None).to_dict(), MODEL, **optimization
        ),  # fmt: skip
    ]


def recipe(name: str) -> dict:
    return {k: v for k, v in yaml.safe_load((CONFIGS / f"{name}.yaml").read_text()).items()
            if k != "defaults"}  # fmt: skip


def test_the_class_defaults_are_the_config_groups_recipes():
    assert RecurrentTask.optimization == recipe("adam")
    assert LanguageModelTask.optimization == recipe("sgd")
    assert set(recipe("adamw")) <= set(RecurrentTask.optimization)


def test_settings_not_given_take_the_tasks_defaults_and_are_saved():
    tagger, classifier, lm = tasks()
    for task in (tagger, classifier):
        assert {k: task.hparams[k] for k in RecurrentTask.optimization} == recipe("adam")
    assert {k: lm.hparams[k] for k in RecurrentTask.optimization} == recipe("sgd")
    tagger, _, lm = tasks(optimizer="adamw", lr=0.01)
    assert (tagger.hparams.optimizer, tagger.hparams.lr, lm.hparams.lr) == ("adamw", 0.01, 0.01)
    assert lm.hparams.lr_patience == 0  # the rest stays the task's


def test_an_unknown_setting_is_refused_naming_it_and_the_known_ones():
    with pytest.raises(TypeError, match=r"\['lrr'\].*'lr'"):
        tasks(lrr=0.1)
