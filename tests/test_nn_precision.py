"""Reduced-precision inference (`rnn_tasks.nn.reduce_precision`): int8 and bfloat16 products
stay close to float32 and are really used; the float32 network, its parameters and its
state dict are left as they were; training, and a stale cached weight, are refused."""

from __future__ import annotations

import copy

import pytest
import torch
from test_config_checks import with_value
from test_tasks import RNN as TASK_RNN
from test_tasks import WORDS, tagging_batch
from torch import nn

from rnn_tasks.cli import EXIT_USER_ERROR, user_errors
from rnn_tasks.config_checks import validate_tool_config
from rnn_tasks.errors import ConfigError
from rnn_tasks.nn import RNN, reduce_precision
from rnn_tasks.nn.precision import PRECISIONS, ReducedLinear
from rnn_tasks.tasks import TaggingTask
from rnn_tasks.text import Vocab

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

D, H, B, T = 16, 32, 13, 7
KINDS = ["elman", "lstm", "gru"]  # elman with its default tanh
REDUCED = ["int8", "bf16"]

# Largest error allowed, relative to the largest entry of the float32 result. Measured on
# these sizes (2 layers, random torch.nn.RNN-style weights, ragged batch), worst of 20 seeds
# over elman/lstm/gru, uni- and bidirectional: int8 4.8% (bidirectional Elman; 2.5-3.3%
# otherwise: 7-bit inputs with fbgemm's reduce_range, 8-bit weights), bf16 0.8% (an 8-bit
# mantissa). The bounds leave a ~1.7x margin, and are still far below what a broken scale or
# a transposed weight gives (errors of order 100%).
INT8_TOLERANCE = 0.08
BF16_TOLERANCE = 0.015
TOLERANCE = {"int8": INT8_TOLERANCE, "bf16": BF16_TOLERANCE}


def assert_near(actual: torch.Tensor, expected: torch.Tensor, precision: str, what: str = ""):
    """Within the precision's tolerance of float32, and not equal to it bit for bit: an
    equal result would mean the float32 kernels ran, not the reduced ones."""
    assert actual.shape == expected.shape, what
    error = ((actual - expected).abs().max() / expected.abs().max()).item()
    assert error <= TOLERANCE[precision], f"{what}: {precision} error {error:.4f} of the largest"
    assert not torch.equal(actual, expected), f"{what}: {precision} equals float32 bit for bit"


def states(state) -> list[torch.Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


def ragged(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, D, generator=g)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    return x, lengths


def network(kind: str, bidirectional: bool = False, seed: int = 0) -> RNN:
    torch.manual_seed(seed)
    return RNN(D, H, num_layers=2, cell=kind, bidirectional=bidirectional)


@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", KINDS)
def test_forward_is_near_float32_on_a_ragged_batch(kind, bidirectional, precision):
    net = network(kind, bidirectional)
    x, lengths = ragged()
    with torch.no_grad():
        expected, expected_state = net(x, lengths)
        actual, state = reduce_precision(net, precision)(x, lengths)
    assert_near(actual, expected, precision, "output")
    for i, (s, e) in enumerate(zip(states(state), states(expected_state), strict=True)):
        assert_near(s, e, precision, f"final state {i}")
    padded = torch.arange(T) >= lengths[:, None]
    assert padded.any() and not actual[padded].any()  # padded steps still give zeros


@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("kind", KINDS)
def test_step_is_near_float32(kind, precision):
    net = network(kind)
    reduced = reduce_precision(net, precision)
    x, _ = ragged()
    state = expected_state = None
    with torch.no_grad():
        for t in range(T):
            out, state = reduced.step(x[:, t], state)
            expected, expected_state = net.step(x[:, t], expected_state)
            assert_near(out, expected, precision, f"step {t}")
            for s, e in zip(states(state), states(expected_state), strict=True):
                assert_near(s, e, precision, f"step {t} state")


@pytest.mark.parametrize("precision", REDUCED)
def test_the_original_is_untouched_unless_inplace(precision):
    net = network("lstm")
    x, lengths = ragged()
    with torch.no_grad():
        before = net(x, lengths)[0]
        reduced = reduce_precision(net, precision)
        assert reduced is not net
        assert all(c.precision == "float32" for c in net.cells)
        assert all(c.precision == precision for c in reduced.cells)
        assert torch.equal(net(x, lengths)[0], before)  # still float32
        same = reduce_precision(net, precision, inplace=True)
        assert same is net and all(c.precision == precision for c in net.cells)
        assert not torch.equal(net(x, lengths)[0], before)
        assert torch.equal(net(x, lengths)[0], reduced(x, lengths)[0])


def test_float32_returns_the_module_itself():
    net = network("gru")
    assert reduce_precision(net, "float32") is net


@pytest.mark.parametrize("precision", REDUCED)
def test_the_state_dict_is_unchanged(precision):
    """Same keys, same values: a reduced model saves and loads as its float32 original."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(20, D), Block(), nn.Linear(2 * H, 5))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reduced = reduce_precision(model, precision)
    after = reduced.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert all(p.dtype == torch.float32 for p in reduced.parameters())
    nn.Sequential(nn.Embedding(20, D), Block(), nn.Linear(2 * H, 5)).load_state_dict(after)


class Block(nn.Module):
    """A bidirectional RNN as a layer of a Sequential: its output only."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = RNN(D, H, cell="gru", bidirectional=True)

    def forward(self, x):
        return self.rnn(x)[0]


@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("kind", KINDS)
def test_a_forward_that_needs_gradients_is_refused(kind, precision):
    reduced = reduce_precision(network(kind), precision)
    x, lengths = ragged()
    with pytest.raises(RuntimeError, match="inference only"):
        reduced(x, lengths)
    with pytest.raises(RuntimeError, match="inference only"):
        reduced(x.requires_grad_())
    linear = reduce_precision(nn.Linear(D, 4), precision)
    with pytest.raises(RuntimeError, match="inference only"):
        linear(x)


@pytest.mark.parametrize("precision", REDUCED)
def test_a_step_that_needs_gradients_is_refused(precision):
    reduced = reduce_precision(network("lstm"), precision)
    with pytest.raises(RuntimeError, match="inference only"):
        reduced.step(torch.randn(B, D))


@pytest.mark.parametrize("precision", REDUCED)
def test_a_linear_layer_and_a_sequential_of_them(precision):
    torch.manual_seed(0)
    x = torch.randn(B, T, D)
    linear = nn.Linear(D, 24)
    reduced = reduce_precision(linear, precision)
    assert isinstance(reduced, ReducedLinear) and isinstance(linear, nn.Linear)
    assert reduced.weight is not linear.weight  # a copy's parameters
    mlp = nn.Sequential(nn.Linear(D, 24), nn.Tanh(), nn.Linear(24, 5, bias=False))
    reduced_mlp = reduce_precision(mlp, precision)
    assert [type(m) for m in reduced_mlp] == [ReducedLinear, nn.Tanh, ReducedLinear]
    assert [type(m) for m in mlp] == [nn.Linear, nn.Tanh, nn.Linear]
    with torch.no_grad():
        assert_near(reduced(x), linear(x), precision, "Linear")  # (B, T, ...) kept
        assert_near(reduced_mlp(x), mlp(x), precision, "Sequential")


def test_int8_scales_each_output_row_on_its_own():
    """Rows of very different sizes (as an output layer's rare and frequent words): with one
    scale per row each output keeps its own relative accuracy; one scale for the whole
    matrix would round the small rows to zero."""
    torch.manual_seed(0)
    linear = nn.Linear(D, 24)
    with torch.no_grad():
        linear.weight.mul_(torch.logspace(-3, 2, 24)[:, None])
        linear.bias.zero_()
        x = torch.randn(B, D)
        expected, actual = linear(x), reduce_precision(linear, "int8")(x)
    error = (actual - expected).abs().amax(0) / expected.abs().amax(0)  # per output
    assert error.max() <= INT8_TOLERANCE, error


def test_a_bad_name_lists_the_precisions():
    assert PRECISIONS == ("float32", "int8", "bf16")
    with pytest.raises(ValueError, match=r"one of \['float32', 'int8', 'bf16'\], got 'int4'"):
        reduce_precision(network("gru"), "int4")


@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("kind", KINDS)
def test_an_in_place_weight_update_is_followed(kind, precision):
    """Prepared (quantised) weights are cached: after `p.mul_(2)` the model must compute
    with the new weights, exactly as a model reduced from them afresh."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, D), Block())
    model[1].rnn = network(kind)
    reduced = reduce_precision(model, precision)
    x, _ = ragged()
    with torch.no_grad():
        before = reduced(x)
        reduced[1].rnn.step(x[:, 0])  # fills the step's cache too
        for p in reduced.parameters():
            p.mul_(2)
        updated = copy.deepcopy(model)
        updated.load_state_dict(reduced.state_dict())
        fresh = reduce_precision(updated, precision)
        assert not torch.equal(reduced(x), before)
        assert torch.equal(reduced(x), fresh(x))
        step, _ = reduced[1].rnn.step(x[:, 0])
        assert torch.equal(step, fresh[1].rnn.step(x[:, 0])[0])


def test_an_int8_tagger_predicts_as_its_float32_original():
    """A tagging task fitted to a synthetic batch, reduced to int8: its tags on a larger
    batch of the same kind match float32's almost everywhere, and it refuses to train."""
    torch.manual_seed(0)
    vocab = Vocab(["<pad>", "<unk>", *WORDS])
    task = TaggingTask(vocab.to_dict(), list("ABCDE"), {**TASK_RNN, "bidirectional": True})
    task.log = lambda *a, **k: None
    g = torch.Generator().manual_seed(0)
    batches = [tagging_batch(g) for _ in range(4)]
    opt = torch.optim.Adam(task.parameters(), lr=1e-2)
    for _ in range(40):
        for batch in batches:
            loss = task._step(batch, "train")
            opt.zero_grad()
            loss.backward()
            opt.step()
    task.eval()
    reduced = reduce_precision(task, "int8")
    real = torch.cat([b["tags"] != -100 for b in batches])
    with torch.no_grad():
        logits = torch.cat([task(b["tokens"], b["lengths"]) for b in batches])
        reduced_logits = torch.cat([reduced(b["tokens"], b["lengths"]) for b in batches])
    assert_near(reduced_logits[real], logits[real], "int8", "tagger logits")
    agree = (reduced_logits.argmax(-1) == logits.argmax(-1))[real].float().mean().item()
    assert agree >= 0.9, f"int8 tags agree with float32 on {agree:.0%} of the words"
    with pytest.raises(RuntimeError, match="inference only"):
        reduced._step(batches[0], "train")


@pytest.mark.parametrize("name", ["evaluate", "predict", "generate"])
def test_a_bad_precision_in_a_tool_config_is_one_error_line(name, capsys):
    cfg = with_value("precision=int4", name, f"ckpt_path={__file__}")
    message = "precision must be one of ['float32', 'int8', 'bf16'], got 'int4'"
    with pytest.raises(ConfigError) as err:
        validate_tool_config(cfg)
    assert str(err.value) == message
    with pytest.raises(SystemExit) as stop, user_errors(cfg):
        validate_tool_config(cfg)
    assert stop.value.code == EXIT_USER_ERROR
    assert capsys.readouterr().err == f"error: {message}\n"
    for good in PRECISIONS:
        validate_tool_config(with_value(f"precision={good}", name, f"ckpt_path={__file__}"))
