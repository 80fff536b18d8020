"""What model a task's hyperparameters build: the one place that maps a task's saved
hyperparameters (`vocab`, `model`, and `tags`, `labels`, `chars` or `boundary`) to its
model's class and constructor arguments, for the tasks (`rnn_tasks.tasks`) and an export
(`rnn_tasks.export`) alike. Pure torch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from .models import Classifier, FeedForwardLM, LanguageModel, Tagger
from .text.vocab import Vocab

MODELS: dict[str, type[nn.Module]] = {
    "LanguageModel": LanguageModel,
    "FeedForwardLM": FeedForwardLM,
    "Tagger": Tagger,
    "Classifier": Classifier,
}
TASKS = ("lm", "pos", "cls")


def model_spec(task: str, hparams: Mapping[str, Any]) -> tuple[str, dict]:
    """The model class name (`MODELS`) and constructor arguments of a task's model, from
    the task's saved hyperparameters (`vocab`, `model`, and `tags`, `labels`, `chars` or
    `boundary`): exactly the model `LanguageModelTask`, `TaggingTask` and
    `ClassificationTask` build."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    vocab = Vocab.from_dict(hparams["vocab"])
    kwargs = _plain(hparams["model"])
    kind = kwargs.pop("type", "rnn")
    if task == "lm":
        if kind == "ffnn":
            start_id = vocab.index(hparams.get("boundary", "<eos>"))
            return "FeedForwardLM", {"vocab_size": len(vocab), "start_id": start_id, **kwargs}
        if kind != "rnn":
            raise ValueError(f"model.type must be one of ['ffnn', 'rnn'], got {kind!r}")
        return "LanguageModel", {"vocab_size": len(vocab), **kwargs}
    if kind != "rnn":
        raise ValueError(
            f"model.type={kind!r} is a language model only; task={task} "
            "needs model.type='rnn' (model=elman, lstm or gru)"
        )
    if kwargs.pop("tie_weights", False):
        raise ValueError(f"model.tie_weights applies to task=lm only, not task={task}")
    chars = Vocab.from_dict(hparams["chars"]) if hparams.get("chars") else None
    name, outputs = ("Tagger", "num_tags") if task == "pos" else ("Classifier", "num_classes")
    classes = hparams["tags"] if task == "pos" else hparams["labels"]
    return name, {
        "vocab_size": len(vocab),
        outputs: len(classes),
        "num_chars": len(chars) if chars else 0,
        "padding_idx": vocab.pad_id,
        "unk_idx": vocab.unk_id,
        "fixed_words": vocab.num_added,
        **kwargs,
    }


def build_model(task: str, hparams: Mapping[str, Any]) -> nn.Module:
    """A new (untrained) model of a task, from its hyperparameters (see `model_spec`)."""
    name, kwargs = model_spec(task, hparams)
    return MODELS[name](**kwargs)


def _plain(value: Any) -> Any:
    """Mappings and sequences as dicts and lists, for JSON (an OmegaConf container too)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
