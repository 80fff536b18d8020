"""Truncated-BPTT batches over running text, as in pytorch/examples word_language_model.

Shapes: B batch rows, N steps per row, T window length (``bptt``).
"""

from __future__ import annotations

from torch import Tensor
from torch.utils.data import Dataset


def batchify(stream: Tensor, batch_size: int) -> Tensor:
    """Cuts a 1-D token stream into ``batch_size`` contiguous rows, dropping the remainder.

    Row ``b`` holds tokens ``[b*N, (b+1)*N)``, so each row reads on as running text.

    Returns:
        ``(B, N)`` tensor.
    """
    n = stream.numel() // batch_size
    if n < 2:
        raise ValueError(
            f"a stream of {stream.numel()} tokens is too short for batch_size={batch_size}: "
            f"each row needs at least 2 tokens (an input and its target)"
        )
    return stream[: n * batch_size].view(batch_size, n)  # (B, N)


class BPTTWindows(Dataset):
    """Consecutive ``bptt``-step windows over a batchified stream; item ``k`` is one whole batch.

    ``{"input": (B, T), "target": (B, T)}`` with the target the input shifted by one step;
    window ``k + 1`` starts where window ``k`` ended, so an RNN state carried across windows
    sees each row as one unbroken text. The last window may be shorter. Over all windows,
    each row predicts its tokens ``1 .. N-1``: ``B * (N - 1)`` predictions in all.
    Use with ``DataLoader(windows, batch_size=None)`` (no shuffling: order matters).

    Under data-parallel training the B rows are divided among the processes: `part=(r,
    W)` keeps rows ``[r * B / W, (r + 1) * B / W)``, so each process reads its own
    contiguous streams, window after window, and the W processes together read exactly
    the rows, windows and predictions of one process with all B.
    """

    def __init__(
        self, stream: Tensor, batch_size: int, bptt: int, part: tuple[int, int] = (0, 1)
    ) -> None:
        if bptt < 1:
            raise ValueError(f"bptt must be >= 1, got {bptt}")
        rank, world = part
        if batch_size % world:
            raise ValueError(
                f"{batch_size} rows cannot be divided among {world} processes: "
                f"make the batch size a multiple of {world}"
            )
        rows = batch_size // world
        self.data = batchify(stream, batch_size)[rank * rows : (rank + 1) * rows]  # (B/W, N)
        self.bptt = bptt

    def __len__(self) -> int:
        return -(-(self.data.size(1) - 1) // self.bptt)  # ceil((N - 1) / bptt)

    def __getitem__(self, k: int) -> dict[str, Tensor]:
        if not 0 <= k < len(self):
            raise IndexError(f"window {k} out of range for {len(self)} windows")
        start = k * self.bptt
        stop = min(start + self.bptt, self.data.size(1) - 1)
        return {
            "input": self.data[:, start:stop].long().contiguous(),  # (B, T)
            "target": self.data[:, start + 1 : stop + 1].long().contiguous(),  # (B, T)
        }

    @property
    def num_predictions(self) -> int:
        """Number of predicted tokens over all windows: ``B * (N - 1)``."""
        return self.data.size(0) * (self.data.size(1) - 1)
