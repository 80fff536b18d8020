"""Hand-written recurrent cells and networks, pure torch (no lightning, hydra or datasets)."""

from .cells import ElmanCell, GRUCell, LSTMCell
from .graphs import cuda_graphs, set_cuda_graphs
from .matmul import matmul_backend, set_matmul_backend
from .precision import reduce_precision
from .recurrence import forward_rnn, unroll
from .rnn import RNN

__all__ = [
    "RNN",
    "ElmanCell",
    "LSTMCell",
    "GRUCell",
    "forward_rnn",
    "unroll",
    "matmul_backend",
    "set_matmul_backend",
    "cuda_graphs",
    "set_cuda_graphs",
    "reduce_precision",
]
