"""rnn-tasks: hand-written recurrent networks for language modelling, tagging and classification.

`rnn_tasks.nn` and `rnn_tasks.models` need torch alone. The Lightning tasks are imported
lazily, so `from rnn_tasks import RNN` in a notebook never pulls in lightning.
"""

from .nn import RNN, ElmanCell, GRUCell, LSTMCell

__version__ = "0.1.0"
__all__ = ["RNN", "ElmanCell", "LSTMCell", "GRUCell"]
