"""Part-of-speech tagging: a softmax over tags at every word of a bidirectional encoder."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from ..inference import TaggerPredictor
from ..specs import build_model
from ..text import Vocab
from ..text.pipeline import TextPipeline
from .base import STAGES
from .encoder_tasks import EncoderTask

IGNORE = -100  # the tag id of padding, skipped by the loss and the metrics


class TaggingTask(EncoderTask):
    """Sequence tagging with cross-entropy over the real (unpadded) words.

    Logs `{stage}/loss`, `{stage}/acc` (over words) and, for val and test, the accuracy of
    every tag (`val/acc_NOUN`, ...: the share of words with that gold tag tagged right).

    Args:
        vocab: `Vocab.to_dict()` of the training words.
        tags: tag names; id i is `tags[i]`.
        chars: `Vocab.to_dict()` of the training characters (for `model.char_embedding_dim`).
        model: `configs/model/*.yaml`: the `Tagger` arguments (an RNN, bidirectional in
            `configs/task/pos.yaml`).
        lowercase: whether the data lowercased words before the vocabulary lookup.
        zero_digits: whether the data read digits as 0 in the vocabulary lookup.
        embeddings: {"path": ..., "freeze": ...}, see `EncoderTask`.
        **optimization: the optimiser and its schedule, see `RecurrentTask`.
    """

    task_name = "pos"

    def __init__(
        self,
        vocab: dict,
        tags: list[str],
        model: dict,
        *,
        chars: dict | None = None,
        lowercase: bool = False,
        zero_digits: bool = False,
        embeddings: dict | None = None,
        data: dict | None = None,
        **optimization,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._check_optimizer()
        self.vocab = Vocab.from_dict(vocab)
        self.tags = list(tags)
        if len(self.tags) < 2:
            raise ValueError(f"tagging needs at least 2 tags, got {self.tags}")
        self.chars = Vocab.from_dict(chars) if chars else None
        self.pipeline = TextPipeline("ud", self.vocab, self.chars, lowercase, zero_digits)
        self.model = build_model("pos", self.hparams)  # rnn_tasks.specs
        C = len(self.tags)
        # Accuracy over words per stage; for val/test also per gold tag, and on words seen
        # and unseen in training (`<unk>`, or added from pretrained vectors), where taggers
        # differ most.
        acc = {
            f"{s}_acc": MulticlassAccuracy(C, average="micro", ignore_index=IGNORE) for s in STAGES
        }
        for s in ("val", "test"):
            acc[f"{s}_tag_acc"] = MulticlassAccuracy(C, average=None, ignore_index=IGNORE)
            for part in ("seen", "unseen"):
                acc[f"{s}_acc_{part}"] = MulticlassAccuracy(C, average="micro", ignore_index=IGNORE)
            acc[f"{s}_unseen_share"] = MeanMetric()  # of the words, those unseen in training
            acc[f"{s}_loss"] = MeanMetric()  # over words: exact across processes too
        self.metrics = nn.ModuleDict(acc)

    def forward(self, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.model(tokens, lengths)

    def _step(self, batch: dict, stage: str) -> Tensor:
        logits = self.model(batch["tokens"], batch["lengths"], batch.get("chars"))
        logits = logits.flatten(0, 1)  # (B*T, C)
        tags = batch["tags"].flatten()
        loss = F.cross_entropy(logits, tags, ignore_index=IGNORE)
        n = int((tags != IGNORE).sum())
        self.metrics[f"{stage}_acc"].update(logits, tags)
        if stage == "train":  # the epoch's loss and accuracy: on_train_epoch_end
            self.log_train_loss(loss, n)
            loss = self.mean_over_processes(loss, n)
        else:
            self.metrics[f"{stage}_loss"].update(loss.detach(), weight=n)
            self.log(f"{stage}/loss", self.metrics[f"{stage}_loss"], prog_bar=stage == "val")
            self.log(f"{stage}/acc", self.metrics[f"{stage}_acc"], prog_bar=True)
            self.metrics[f"{stage}_tag_acc"].update(logits, tags)
            tokens = batch["tokens"].flatten()
            unseen = tokens == self.vocab.unk_id
            if self.vocab.added_from is not None:  # pretrained words training never saw
                unseen |= tokens >= self.vocab.added_from
            for part, rows in (("seen", ~unseen), ("unseen", unseen)):
                if rows.any():
                    self.metrics[f"{stage}_acc_{part}"].update(logits[rows], tags[rows])
            self.metrics[f"{stage}_unseen_share"].update(unseen[tags != IGNORE].float())
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    def _log_breakdown(self, stage: str) -> None:
        metric = self.metrics[f"{stage}_tag_acc"]
        accuracy = metric.compute()
        with metric.sync_context():  # every process's counts, as compute() used
            support = metric.tp + metric.fn  # gold words per tag
        for tag, acc, n in zip(self.tags, accuracy, support, strict=True):
            if n > 0:  # a tag with no word in the split has no accuracy (torchmetrics says 0)
                self.log(f"{stage}/acc_{tag}", acc)
        metric.reset()
        for part in ("seen", "unseen"):
            metric = self.metrics[f"{stage}_acc_{part}"]
            if metric.update_called:  # a split may have no unseen word at all
                self.log(f"{stage}/acc_{part}", metric.compute())
            metric.reset()
        share = self.metrics[f"{stage}_unseen_share"]
        self.log(f"{stage}/unseen_share", share.compute())
        share.reset()

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.log("train/acc", self.metrics["train_acc"].compute())
        self.metrics["train_acc"].reset()

    def on_validation_epoch_end(self) -> None:
        self._log_breakdown("val")

    def on_test_epoch_end(self) -> None:
        self._log_breakdown("test")

    def predict(
        self, text: str | list[str] | list[list[str]], probs: bool = False
    ) -> list[tuple[str, str]] | list[list[tuple[str, str]]]:
        """Tag a sentence (a raw string, tokenised as EWT is): its (word, tag) pairs; or
        a list of sentences (raw strings, or lists of words), batched: a list of those.
        With `probs`, each pair also holds every tag's probability."""
        if isinstance(text, str):
            return self.predictor.predict([text], probs)[0]
        return self.predictor.predict(list(text), probs)

    @property
    def predictor(self) -> TaggerPredictor:
        return TaggerPredictor(self.model, self.pipeline, self.tags)
