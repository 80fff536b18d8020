"""The kernels' matrix products on every backend (`rnn_tasks.nn.matmul`): each one gives
torch's results, is the one actually used, and is chosen, logged and kept as documented."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import pytest
import test_nn_torch_equivalence as reference
import torch
from test_nn_torch_equivalence import KINDS, assert_equal_to
from torch import nn

from rnn_tasks.files import CACHE_ENV
from rnn_tasks.nn import RNN, matmul
from rnn_tasks.resume import KEY, keep_matmul_backend

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

ONEDNN = pytest.mark.skipif(not matmul.onednn_available(), reason="torch without oneDNN")
BACKENDS = [
    "blas",
    pytest.param("onednn", marks=ONEDNN),
    pytest.param("onednn-steps", marks=ONEDNN),
]


@pytest.fixture
def restore_backend():
    before = matmul._chosen
    yield
    matmul._chosen = before


@pytest.fixture
def backend(request, restore_backend, monkeypatch):
    """Sets the backend for the test and counts its products, so that a test can also
    check that the kernels went through it."""
    chosen = matmul.BACKENDS[request.param]
    calls = {"addmm_": 0, "addmm": 0, "linear": 0}
    for name in calls:
        original = getattr(chosen, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(chosen, name, staticmethod(counted))
    matmul.set_matmul_backend(request.param)
    return calls


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("ragged", [False, True], ids=["equal", "ragged"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_backend_matches_torch_in_float32(backend, kind, bidirectional, ragged):
    """Forward, backward and inference, 2 layers, against torch.nn, float32 up to rounding;
    every step's product goes through the backend (counted), in each direction."""
    steps = reference.T * 2 * (2 if bidirectional else 1)  # time steps x layers x directions
    reference.test_matches_torch_without_grad(
        kind, 2, bidirectional, ragged, True, torch.float32, torch.no_grad
    )
    assert backend["addmm_"] >= steps and backend["linear"] > 0
    backend.update(addmm_=0)
    reference.test_matches_torch(
        kind, 2, bidirectional, ragged, True, torch.float32, "manual", "cpu"
    )
    assert backend["addmm_"] >= 2 * steps  # forward and backward


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_backend_steps_like_torch(backend, kind):
    """`RNN.step` without autograd (generation) equals torch's module on one step."""
    torch.manual_seed(0)
    cls, kwargs = KINDS[kind]
    theirs = cls(6, 8, 2, batch_first=True, **kwargs)
    ours = RNN.from_torch(theirs)
    x, state, state_ref = torch.randn(3, 4, 6), None, None
    with torch.no_grad():
        for t in range(x.shape[1]):
            out, state = ours.step(x[:, t], state)
            out_ref, state_ref = theirs(x[:, t : t + 1], state_ref)
            assert_equal_to(out, out_ref[:, 0], f"step {t}")
    assert backend["addmm_"] > 0


def test_float64_and_other_devices_take_torchs_own_products(restore_backend):
    matmul.set_matmul_backend("onednn" if matmul.onednn_available() else "blas")
    assert matmul.backend_for(torch.zeros(1, dtype=torch.float64)) is matmul.Blas
    assert matmul.backend_for(torch.zeros(1, device="meta")) is matmul.Blas


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_cached_weights_follow_an_in_place_update(kind, restore_backend):
    """Inference caches prepared weights; an optimizer step (in place) must not leave a
    stale copy in use."""
    matmul.set_matmul_backend("blas")
    torch.manual_seed(0)
    ours = RNN(5, 6, cell=kind)
    x = torch.randn(2, 4, 5)
    with torch.no_grad():
        ours(x)
        ours.step(x[:, 0])
        for p in ours.parameters():
            p.mul_(1.5)
        fresh = RNN(5, 6, cell=kind)
        fresh.load_state_dict(ours.state_dict())
        assert torch.equal(ours(x)[0], fresh(x)[0])
        assert torch.equal(ours.step(x[:, 0])[0], fresh.step(x[:, 0])[0])


def _slowed(product):
    def run(*args, **kwargs):
        time.sleep(0.002)
        return product(*args, **kwargs)

    return staticmethod(run)


@pytest.fixture
def no_cached_choice(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    return tmp_path / "matmul.json"


@ONEDNN
@pytest.mark.parametrize(
    ("slow", "chosen"),
    [
        ({}, ("blas", "onednn", "onednn-steps")),  # whatever this machine measures
        ({"Blas": ["addmm_", "linear"]}, ("onednn", "onednn-steps")),
        ({"Blas": ["addmm_", "linear"], "OneDNNSteps": ["linear"]}, ("onednn",)),
        ({"OneDNN": ["addmm_"]}, ("blas",)),
    ],
)
def test_auto_keeps_blas_unless_another_library_is_clearly_faster(
    slow, chosen, restore_backend, no_cached_choice, monkeypatch, caplog
):
    """`auto` times a real LSTM training step through each library; a library made slow
    (a sleep in its products) must lose."""
    for cls, names in slow.items():
        for name in names:
            original = getattr(getattr(matmul, cls), name)
            monkeypatch.setattr(getattr(matmul, cls), name, _slowed(original))
    with caplog.at_level(logging.INFO, logger="rnn_tasks"):
        name = matmul.set_matmul_backend("auto")
    assert name in chosen
    assert f"matmul backend: {name} (auto)" in caplog.text


@ONEDNN
def test_auto_measures_once_per_machine(restore_backend, no_cached_choice, monkeypatch):
    """The second process (here: the second call) reads the first one's choice back, so two
    runs of one command on one machine compute alike, even where timing noise would flip it."""
    first = matmul.set_matmul_backend("auto")
    assert json.loads(no_cached_choice.read_text()).popitem()[1] == first

    def measure_again():
        raise AssertionError("measured again")

    monkeypatch.setattr(matmul, "_measure", measure_again)
    assert matmul.set_matmul_backend("auto") == first
    torch.set_num_threads(torch.get_num_threads() + 1)  # another thread count: measured anew
    try:
        with pytest.raises(AssertionError, match="measured again"):
            matmul.set_matmul_backend("auto")
    finally:
        torch.set_num_threads(torch.get_num_threads() - 1)


def test_the_environment_chooses_and_a_bad_name_is_refused(restore_backend):
    code = "from rnn_tasks.nn import matmul; print(matmul.matmul_backend())"
    env = {**os.environ, matmul.ENV: "blas"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.stdout.strip() == "blas", run.stderr
    with pytest.raises(
        ValueError, match=r"one of \['auto', 'blas', 'onednn', 'onednn-steps'\], got 'mkl2'"
    ):
        matmul.set_matmul_backend("mkl2")


def test_a_resumed_run_keeps_its_checkpoints_backend(restore_backend, caplog):
    matmul.set_matmul_backend("blas")
    keep_matmul_backend("auto", {KEY: {"matmul": "onednn"}}, "last.ckpt")
    assert matmul.matmul_backend() == "onednn"
    with caplog.at_level(logging.WARNING, logger="rnn_tasks"):
        keep_matmul_backend("blas", {KEY: {"matmul": "onednn"}}, "last.ckpt")
    assert "trained with matmul=onednn" in caplog.text
    keep_matmul_backend("auto", {}, "old.ckpt")  # a checkpoint from before the choice: no change
    assert matmul.matmul_backend() == "onednn"


def test_backends_agree_on_a_trained_lstm_language_model_step(restore_backend):
    """The two libraries differ only in float32 rounding on a realistic shape (H 256, B 32)."""
    if not matmul.onednn_available():
        pytest.skip("torch without oneDNN")
    torch.manual_seed(0)
    rnn = RNN.from_torch(nn.LSTM(256, 256, 2, batch_first=True))
    x = torch.randn(32, 35, 256)
    results = {}
    for name in ("blas", "onednn"):
        matmul.set_matmul_backend(name)
        with torch.no_grad():
            results[name] = rnn(x)[0]
    assert_equal_to(results["onednn"], results["blas"], "onednn vs blas")


def test_auto_measures_wherever_the_first_product_comes_from(restore_backend, no_cached_choice):
    """The first product may come from inside `torch.inference_mode` or an autograd
    Function's forward (no grad): the measurement, a training step, still runs."""
    matmul._chosen = None
    rnn = RNN(4, 5, cell="lstm")
    with torch.inference_mode():
        rnn(torch.randn(2, 3, 4))
    assert no_cached_choice.exists()
    matmul._chosen = None
    no_cached_choice.unlink()
    rnn(torch.randn(2, 3, 4, requires_grad=True))[0].sum().backward()
    assert no_cached_choice.exists()


@pytest.mark.parametrize(("environment", "expected"), [(None, "auto"), ("onednn", "onednn")])
def test_the_training_config_takes_the_environments_choice(
    environment, expected, monkeypatch, tmp_path
):
    from test_train import make_cfg

    from rnn_tasks.config_checks import validate_train_config

    if environment is None:
        monkeypatch.delenv(matmul.ENV, raising=False)
    else:
        monkeypatch.setenv(matmul.ENV, environment)
    cfg = make_cfg(tmp_path, ["task=cls"])
    assert cfg.matmul == expected
    monkeypatch.setenv(matmul.ENV, "mkl")  # a bad value is refused like a bad override
    with pytest.raises(Exception, match="matmul"):
        validate_train_config(make_cfg(tmp_path, ["task=cls"]))


def test_packed_input_is_refused_with_what_to_pass_instead():
    rnn = RNN(3, 4, batch_first=False)
    packed = nn.utils.rnn.pack_padded_sequence(torch.randn(5, 2, 3), [5, 3])
    with pytest.raises(ValueError, match="PackedSequence input is not supported"):
        rnn(packed)


def test_reduce_precision_says_when_it_leaves_a_torch_rnn_alone():
    from rnn_tasks.nn import reduce_precision

    with pytest.warns(UserWarning, match=r"leaves torch.nn recurrent modules.*\['1'\]"):
        reduce_precision(nn.Sequential(nn.Linear(3, 3), nn.LSTM(3, 3)), "int8")
