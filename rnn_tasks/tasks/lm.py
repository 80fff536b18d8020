"""Next-word language modelling with truncated backpropagation through time.

Batches are consecutive windows of B parallel streams, `{"input": (B, T), "target": (B, T)}`
(`rnn_tasks.data.LMDataModule`). The state left by one window starts the next, detached,
so gradients flow back at most T steps while the model still sees the whole history
(the standard PTB setup of Zaremba et al. 2014 and pytorch/examples word_language_model).
Lightning 2.x has no built-in TBPTT, so the state lives here, one slot per stage, and is
reset at the start of every epoch.
"""

from __future__ import annotations

import logging
import math
from numbers import Integral

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from ..generation import check_sampling, generate
from ..inference import LMPredictor
from ..specs import build_model
from ..text import Vocab
from ..text.pipeline import TextPipeline
from .base import STAGES, RecurrentTask

log = logging.getLogger(__name__)


def _detach(state):
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def _to_device(state, device):
    if isinstance(state, (tuple, list)):
        return tuple(_to_device(s, device) for s in state)
    return None if state is None else state.to(device)


class LanguageModelTask(RecurrentTask):
    """Trains a next-word LM with cross-entropy; reports perplexity.

    Args:
        vocab: `Vocab.to_dict()` of the data (stored in the checkpoint).
        model: model hyperparameters (`configs/model/*.yaml`); `type: ffnn` for the
            feed-forward N-gram baseline.
        boundary: the sentence-boundary token. In PTB-style streams one `<eos>` ends
            each sentence, so it is also the state from which the next sentence starts:
            it plays both the lecture's `</s>` and `<s>`.
        lowercase: lowercase text given to `next_words` / `generate`, as the data was.
        activation_reg: alpha of activation regularisation (AR, Merity et al. 2017): the
            training loss adds `alpha * mean(m * h_t)^2`, the top layer's outputs after
            `output_dropout` (mask m), keeping the outputs small.
        temporal_reg: beta of temporal activation regularisation (TAR): the training loss
            adds `beta * mean(h_t - h_{t-1})^2` over the outputs before dropout, so the
            state moves slowly from step to step. Neither changes the reported perplexity.
        **optimization: the optimiser and its schedule, see `RecurrentTask`.
    """

    task_name = "lm"
    # pytorch/examples word_language_model (configs/optimizer/sgd.yaml)
    optimization = {**RecurrentTask.optimization, "optimizer": "sgd", "lr": 20.0,
                    "lr_decay": 0.25, "lr_patience": 0}  # fmt: skip

    def __init__(
        self,
        vocab: dict,
        model: dict,
        *,
        boundary: str = "<eos>",
        lowercase: bool = False,
        data: dict | None = None,
        activation_reg: float = 0.0,
        temporal_reg: float = 0.0,
        **optimization,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._check_optimizer()
        for name, value in (("activation_reg", activation_reg), ("temporal_reg", temporal_reg)):
            if not value >= 0:  # NaN too
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.vocab = Vocab.from_dict(vocab)
        if boundary not in self.vocab:
            raise ValueError(f"boundary token {boundary!r} is not in the vocabulary")
        self.boundary_id = self.vocab.index(boundary)
        self.pipeline = TextPipeline("whitespace", self.vocab, lowercase=lowercase)
        self.model = build_model("lm", self.hparams)  # rnn_tasks.specs
        if (activation_reg or temporal_reg) and not hasattr(self.model, "forward_with_outputs"):
            raise ValueError(
                "activation_reg and temporal_reg act on a recurrent model's outputs; "
                f"model.type={model.get('type')!r} has none (use model.type=rnn)"
            )
        self.nll = nn.ModuleDict({f"{s}_nll": MeanMetric() for s in STAGES})
        self._states: dict[str, object] = {}
        self._texts_warned_of: set[str] = set()  # texts with words read as <unk>

    def forward(self, tokens: Tensor, state=None):
        return self.model(tokens, state)

    # -- training loop: state carried window to window ---------------------------------

    def _step(self, batch: dict, stage: str) -> Tensor:
        """The batch's cross-entropy, plus AR and TAR in training when they are on."""
        state = _detach(self._states.get(stage))
        hp = self.hparams
        regularised = stage == "train" and (hp.get("activation_reg") or hp.get("temporal_reg"))
        if regularised:
            logits, state, (out, dropped) = self.model.forward_with_outputs(batch["input"], state)
        else:
            logits, state = self.model(batch["input"], state)
        self._states[stage] = state
        target = batch["target"]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
        self.nll[f"{stage}_nll"].update(loss.detach(), weight=target.numel())
        if regularised:
            loss = loss + self._activation_penalty(out, dropped)
        return loss

    def _activation_penalty(self, out: Tensor, dropped: Tensor) -> Tensor:
        """AR on the dropped outputs and TAR on the outputs before dropout (B, T, H)."""
        alpha, beta = self.hparams.activation_reg, self.hparams.temporal_reg
        ar = alpha * dropped.square().mean() if alpha else out.new_zeros(())
        tar = beta * (out[:, 1:] - out[:, :-1]).square().mean() if beta else out.new_zeros(())
        self.log("train/ar", ar.detach(), on_step=False, on_epoch=True)
        self.log("train/tar", tar.detach(), on_step=False, on_epoch=True)
        return ar + tar

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self._step(batch, "train")
        self.log_train_loss(loss, batch["target"].numel())
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    def _start(self, stage: str) -> None:
        self._states[stage] = None
        self.nll[f"{stage}_nll"].reset()

    def _end(self, stage: str) -> None:
        # Perplexity = exp(total NLL / total tokens), never a mean of per-batch perplexities.
        nll = self.nll[f"{stage}_nll"].compute()
        self.log(f"{stage}/ppl", torch.exp(nll), prog_bar=stage != "train")
        if stage != "train":
            self.log(f"{stage}/loss", nll, prog_bar=stage == "val")
        if stage == "val" and not self.trainer.sanity_checking:
            self._warn_if_diverged(float(nll))

    def _warn_if_diverged(self, nll: float) -> None:
        uniform = math.log(len(self.vocab))  # the loss of giving every word the same chance
        if not nll <= uniform:  # NaN too
            log.warning(
                "val/loss %.2f is above %.2f = log V, the loss of guessing every word "
                "equally: training diverged. Lower task.lr (%s at lr %g); a tanh Elman RNN "
                "learns with task.optimizer=adam task.lr=0.002, as experiment=ptb_elman does",
                nll,
                uniform,
                self.hparams.optimizer,
                self.hparams.lr,
            )

    def train_epoch_state(self) -> dict:
        # The state carried out of the last window starts the next one.
        return {**super().train_epoch_state(), "carried": self._states.get("train")}

    def load_train_epoch_state(self, state: dict) -> None:
        state = dict(state)
        carried = state.pop("carried")
        super().load_train_epoch_state(state)
        self._states["train"] = _to_device(carried, self.device)

    def on_train_epoch_start(self) -> None:
        self._start("train")

    def on_validation_epoch_start(self) -> None:
        self._start("val")

    def on_test_epoch_start(self) -> None:
        self._start("test")

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self._end("train")

    def on_validation_epoch_end(self) -> None:
        self._end("val")

    def on_test_epoch_end(self) -> None:
        self._end("test")

    # -- use on plain strings ------------------------------------------------------------

    @property
    def predictor(self) -> LMPredictor:
        return LMPredictor(self.model, self.pipeline, self.hparams.boundary)

    def _encode(self, text: str) -> list[int]:
        """A text's ids from a sentence start, saying once which words read as unknown."""
        unknown = self.pipeline.unknown(self.pipeline.words(text))
        if unknown and self.vocab.unk is not None and text not in self._texts_warned_of:
            self._texts_warned_of.add(text)  # once, however many samples read it
            log.warning(
                "not in the vocabulary, read as %s: %s%s",
                self.vocab.unk,
                ", ".join(unknown),
                "" if self.hparams.lowercase else " (the model's words are case-sensitive)",
            )
        return self.predictor.context_ids(text)

    def next_words(self, text: str = "", k: int = 10) -> list[tuple[str, float]]:
        """The k most likely next words after `text` (read from a sentence start), with
        their probabilities: `P(w | "thanks for all the")`."""
        if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
            raise ValueError(f"k must be a whole number >= 1, got {k!r}")
        self._encode(text)  # says which words are unknown
        return self.predictor.next_words(text, k)

    def prob(self, words: str | list[str], context: str = "") -> dict[str, dict]:
        """`P(word | context)` and the word's rank (1: most likely) for each of `words`:
        `lm.prob("fish", "thanks for all the")`. A word the model does not know is said so
        (`in_vocabulary: False`), not read as `<unk>`."""
        self._encode(context)
        return self.predictor.prob(words, context)

    def score(self, texts: str | list[str]) -> dict | list[dict]:
        """A text's log-probability under the model (each sentence from `<s>` to `</s>`),
        its perplexity and token count; for a list of texts (batched), a list of those."""
        if isinstance(texts, str):
            return self.predictor.score([texts])[0]
        return self.predictor.score(list(texts))

    def generate(
        self,
        prompt: str = "",
        max_new_tokens: int = 30,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
    ) -> str:
        """Continue `prompt` from a sentence start until the boundary token or the limit."""
        check_sampling(temperature, top_k)
        self.eval()
        generator = None
        if seed is not None:
            generator = torch.Generator(self.device).manual_seed(seed)
        ids = generate(
            self.model,
            self._encode(prompt),
            max_new_tokens,
            self.boundary_id,
            temperature,
            top_k,
            generator,
        )
        return " ".join(self.vocab.decode(ids))
