"""Document classification (spam / ham) from a bidirectional encoder's final states."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from ..inference import ClassifierPredictor
from ..specs import build_model
from ..text import Vocab
from ..text.pipeline import TextPipeline
from .base import STAGES, check_choice
from .encoder_tasks import EncoderTask

ClassWeighting = Literal["none", "balanced"]


class ClassificationTask(EncoderTask):
    """Cross-entropy over document labels, optionally weighted against class imbalance.

    Logs `{stage}/loss`, `{stage}/acc`, the precision, recall and F1 of the positive class
    (`{stage}/precision`, ...; spam for the SMS data: with 13% spam, accuracy alone says
    little) and `{stage}/macro_f1`.

    Args:
        vocab: `Vocab.to_dict()` of the training words.
        labels: label names; id i is `labels[i]`.
        chars: `Vocab.to_dict()` of the training characters (for `model.char_embedding_dim`).
        model: `configs/model/*.yaml`: the `Classifier` arguments (an RNN, bidirectional,
            with `classifier_hidden` units in the feed-forward head: `configs/task/cls.yaml`).
        class_counts: training examples per label (from the data), for the weighting.
        class_weighting: "none", or "balanced": weight class c by N / (C * count_c).
        positive_label: the class whose precision/recall/F1 are reported; by default the
            last label (labels are sorted, so "spam" of ham/spam).
        lowercase: whether the data lowercased text before the vocabulary lookup.
        zero_digits: whether the data read digits as 0 in the vocabulary lookup.
        embeddings: {"path": ..., "freeze": ...}, see `EncoderTask`.
        **optimization: the optimiser and its schedule, see `RecurrentTask`.
    """

    task_name = "cls"

    def __init__(
        self,
        vocab: dict,
        labels: list[str],
        model: dict,
        *,
        chars: dict | None = None,
        class_counts: list[int] | None = None,
        class_weighting: ClassWeighting = "none",
        positive_label: str | None = None,
        lowercase: bool = True,
        zero_digits: bool = False,
        embeddings: dict | None = None,
        data: dict | None = None,
        **optimization,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._check_optimizer()
        check_choice("class_weighting", class_weighting, ("none", "balanced"))
        self.vocab = Vocab.from_dict(vocab)
        self.labels = list(labels)
        self.chars = Vocab.from_dict(chars) if chars else None
        self.pipeline = TextPipeline("messages", self.vocab, self.chars, lowercase, zero_digits)
        C = len(self.labels)
        if C < 2:
            raise ValueError(f"classification needs at least 2 labels, got {self.labels}")
        positive_label = self.labels[-1] if positive_label is None else positive_label
        check_choice("positive_label", positive_label, self.labels)
        self.positive = self.labels.index(positive_label)
        self.model = build_model("cls", self.hparams)  # rnn_tasks.specs
        weight = None
        if class_weighting == "balanced":
            if not class_counts or len(class_counts) != C or min(class_counts) < 1:
                raise ValueError(
                    f"class_weighting='balanced' needs a positive count for each "
                    f"of {self.labels}, got class_counts={class_counts}"
                )
            counts = torch.tensor(class_counts, dtype=torch.float)
            weight = counts.sum() / (C * counts)
        self.register_buffer("class_weight", weight, persistent=False)
        self.losses = nn.ModuleDict({s: MeanMetric() for s in ("val", "test")})
        self.metrics = nn.ModuleDict(
            {
                f"{s}_metrics": MetricCollection(
                    {
                        "acc": MulticlassAccuracy(C, average="micro"),
                        "precision": MulticlassPrecision(C, average=None),
                        "recall": MulticlassRecall(C, average=None),
                        "f1": MulticlassF1Score(C, average=None),
                        "macro_f1": MulticlassF1Score(C, average="macro"),
                    },
                    prefix=f"{s}_",
                )
                for s in STAGES
            }
        )

    def forward(self, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.model(tokens, lengths)

    def _step(self, batch: dict, stage: str) -> Tensor:
        logits = self.model(batch["tokens"], batch["lengths"], batch.get("chars"))  # (B, C)
        loss = F.cross_entropy(logits, batch["label"], weight=self.class_weight)
        self.metrics[f"{stage}_metrics"].update(logits, batch["label"])
        # The loss is a mean weighted by the messages' class weights: so are its sums.
        n = len(logits) if self.class_weight is None else self.class_weight[batch["label"]].sum()
        if stage != "train":
            self.losses[stage].update(loss.detach(), weight=n)  # exact across processes too
            self.log(f"{stage}/loss", self.losses[stage], prog_bar=stage == "val")
            return loss
        self.log_train_loss(loss, len(logits))
        return self.mean_over_processes(loss, n)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    def _log_epoch(self, stage: str) -> None:
        values = self.metrics[f"{stage}_metrics"].compute()
        for name, value in values.items():
            name = name.removeprefix(f"{stage}_")
            if value.ndim:  # per-class: report the positive class
                value = value[self.positive]
            self.log(f"{stage}/{name}", value, prog_bar=name in ("acc", "f1"))
        self.metrics[f"{stage}_metrics"].reset()

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def predict(self, text: str | list[str]) -> tuple[str, float] | list[tuple[str, float]]:
        """The most likely label of a document and its probability; for a list of
        documents (batched), a list of those."""
        if isinstance(text, str):
            return self.predictor.predict([text])[0]
        return self.predictor.predict(list(text))

    def predict_proba(self, text: str | list[str]) -> dict[str, float] | list[dict[str, float]]:
        """The probability of every label for a document (or each of a list of them)."""
        if isinstance(text, str):
            return self.predictor.predict_proba([text])[0]
        return self.predictor.predict_proba(list(text))

    @property
    def predictor(self) -> ClassifierPredictor:
        return ClassifierPredictor(self.model, self.pipeline, self.labels)
