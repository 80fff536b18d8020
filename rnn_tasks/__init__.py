"""rnn-tasks: hand-written recurrent networks for language modelling, tagging and classification.

`rnn_tasks.nn` and `rnn_tasks.models` need torch alone, so `from rnn_tasks import RNN,
Tagger` in a notebook never imports lightning; nor does `rnn_tasks.load_model(folder)`, which
reads an export (`scripts/export.py`) with torch and safetensors alone. The Lightning tasks
are imported on first use: `from rnn_tasks import TaggingTask, load_task`.
"""

from importlib import import_module

from .export import load_model
from .models import Classifier, Encoder, FeedForwardLM, LanguageModel, Tagger
from .nn import RNN, ElmanCell, GRUCell, LSTMCell

__version__ = "0.1.0"

_LAZY = {
    "LanguageModelTask": "rnn_tasks.tasks",
    "TaggingTask": "rnn_tasks.tasks",
    "ClassificationTask": "rnn_tasks.tasks",
    "load_task": "rnn_tasks.tasks",
}  # not `train`: the submodule rnn_tasks.train takes that name once anything imports it


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rnn_tasks' has no attribute {name!r}")


__all__ = [
    "RNN",
    "ElmanCell",
    "LSTMCell",
    "GRUCell",
    "Encoder",
    "LanguageModel",
    "FeedForwardLM",
    "Tagger",
    "Classifier",
    "load_model",
    *_LAZY,
]
