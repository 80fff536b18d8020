"""Hand-written recurrent cells and networks, pure torch (no lightning, hydra or datasets)."""

from .cells import ElmanCell, GRUCell, LSTMCell
from .recurrence import forward_rnn, unroll
from .rnn import RNN

__all__ = ["RNN", "ElmanCell", "LSTMCell", "GRUCell", "forward_rnn", "unroll"]
