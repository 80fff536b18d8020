"""What a finished training run leaves to look at: the test confusion of its tested (best)
model, kept as `confusion.json`, and the figures `rnn_tasks.plots` draws from its files.

`confusion.json` (strict JSON; rows the true label, columns the prediction):

    {"task": "pos", "split": "test", "labels": ["ADJ", ...], "matrix": [[412, 3, ...], ...],
     "words": {"seen": {"correct": 2210, "total": 2391}, "unseen": {...}}}   # tagging only
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from .plots import write_run_figures

log = logging.getLogger(__name__)

IGNORE = -100  # the tag of padding (tasks/tagging.py): neither counted nor predicted


def unseen_words(vocab, tokens: Tensor) -> Tensor:
    """Which `tokens` training never saw, as `TaggingTask` counts them: `<unk>`, or words
    added from pretrained vectors (ids from `vocab.added_from` on)."""
    unseen = tokens == vocab.unk_id
    if vocab.added_from is not None:
        unseen |= tokens >= vocab.added_from
    return unseen


@torch.no_grad()
def test_confusion(task, loader) -> dict:
    """The confusion counts of a classification or tagging `task` over `loader`'s batches,
    computed as the task's `_step` does (eval mode, no gradients); for tagging, also the
    words seen and unseen in training, right and in all. See the module doc for the dict."""
    tagging = task.task_name == "pos"
    labels = list(task.tags if tagging else task.labels)
    # Counted here over the whole loader: no syncing with other processes, which under DDP
    # may have ended already.
    confusion = MulticlassConfusionMatrix(
        len(labels), ignore_index=IGNORE, sync_on_compute=False
    ).to(task.device)
    words = {part: {"correct": 0, "total": 0} for part in ("seen", "unseen")}
    was_training = task.training
    task.eval()
    try:
        for batch in loader:
            batch = {k: v.to(task.device) if isinstance(v, Tensor) else v for k, v in batch.items()}
            logits = task.model(batch["tokens"], batch["lengths"], batch.get("chars"))
            if not tagging:
                confusion.update(logits.argmax(-1), batch["label"])  # (B,)
                continue
            predicted, gold = logits.argmax(-1).flatten(), batch["tags"].flatten()  # (B*T,)
            confusion.update(predicted, gold)
            unseen = unseen_words(task.vocab, batch["tokens"].flatten())
            real, right = gold != IGNORE, predicted == gold
            for part, rows in (("seen", real & ~unseen), ("unseen", real & unseen)):
                words[part]["correct"] += int((right & rows).sum())
                words[part]["total"] += int(rows.sum())
    finally:
        task.train(was_training)
    result = {
        "task": task.task_name,
        "split": "test",
        "labels": labels,
        "matrix": confusion.compute().long().tolist(),
    }
    if tagging:
        result["words"] = words
    return result


def write_figures(output_dir: str | Path, task, datamodule, tested: bool = True) -> list[Path]:
    """After a finished run that logged to `output_dir/metrics.csv`: `confusion.json` of a
    tested classifier or tagger (`task` holds the tested weights), then the run's figures.

    Returns the figures written; none without metrics.csv. A failure is logged as a warning
    and returns none: the run has finished, and its figures are not worth losing it.
    """
    output_dir = Path(output_dir)
    if not (output_dir / "metrics.csv").is_file():  # no logger, or not a CSV one
        return []
    confusion = output_dir / "confusion.json"
    try:
        if tested and task.task_name in ("pos", "cls"):
            counts = test_confusion(task, datamodule.whole_split_loader("test"))
            confusion.write_text(json.dumps(counts, allow_nan=False) + "\n")
        else:
            confusion.unlink(missing_ok=True)  # an earlier test's counts are not this model's
        written = write_run_figures(output_dir)
    except Exception as err:  # noqa: BLE001 - see the docstring
        log.warning("figures of %s not drawn: %s: %s", output_dir, type(err).__name__, err)
        return []
    for path in written:
        log.info("figure written to %s", path)
    return written
