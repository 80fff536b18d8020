"""A user's mistake in a script ends in one `error:` line and exit code 2, no traceback
(rnn_tasks/cli.py); free text is taken literally. The scripts run as subprocesses, all at
once: each one spends seconds importing torch and Lightning."""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from rnn_tasks.cli import EXIT_USER_ERROR, user_errors
from rnn_tasks.errors import ConfigError
from rnn_tasks.runtime import text_input, text_setting

ROOT = Path(__file__).parents[1]
TINY_POS = ["task=pos", "model.embedding_dim=8", "model.hidden_size=8", "trainer.max_epochs=1",
            "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "test=false",
            "trainer.enable_progress_bar=false", "~logger"]  # fmt: skip


def predict_config(*overrides):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("predict", overrides=["ckpt_path=x.ckpt", *overrides],
                      return_hydra_config=True)  # fmt: skip
    HydraConfig().set_config(cfg)  # what text_setting reads the command line from
    return cfg


def run(args, stdin=None, env=None):
    script, *args = args
    clean = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args],
                          input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**clean, **(env or {})})  # fmt: skip


@pytest.fixture(scope="module")
def pos_ckpt(tmp_path_factory):
    from rnn_tasks.train import train

    out = tmp_path_factory.mktemp("pos")
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=TINY_POS, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.output_dir = str(out)
        del cfg.hydra
    train(cfg)
    return out / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="module")
def runs(pos_ckpt, tmp_path_factory):
    """Every command below, run at the same time: {name: CompletedProcess}."""
    tmp = tmp_path_factory.mktemp("cli")
    empty = tmp / "empty.conllu"
    empty.write_text("")
    ckpt = f"ckpt_path={pos_ckpt}"
    bad_epochs = ["train.py", "trainer.max_epochs=abc", f"hydra.run.dir={tmp / 'run'}"]
    commands = {  # about 2 s each to fail before Lightning is imported, 5 s after
        "max_epochs": (bad_epochs,),
        "max_epochs full error": (bad_epochs, None, {"HYDRA_FULL_ERROR": "1"}),
        "missing ckpt": (["predict.py", f"ckpt_path={tmp / 'none.ckpt'}", "text=hi"],),
        "literal text": (["predict.py", ckpt, "text=pay ${amount} now", "threads=1"],),
        "stdin": (["predict.py", ckpt, "text_file=-", "threads=1"], "Pay ${amount}, 'now'\n"),
        "nan": (["generate.py", ckpt, "temperature=nan"],),
        "too long": (["generate.py", ckpt, "temperature=0", "max_new_tokens=1000000000"],),
        "not an lm": (["generate.py", ckpt, "threads=1"],),
        "empty file": (["evaluate.py", ckpt, f"data.test_file={empty}", "threads=1"],),
        "split": (["evaluate.py", ckpt, "split=train"],),
        "lm name": (["train.py", "task=lm", "data.name=ptb2", f"hydra.run.dir={tmp / 'n'}"],),
        "streaming": (
            ["train.py", "task=lm", "data.streaming=true", f"hydra.run.dir={tmp / 's'}"],
        ),
        "streaming flag": (
            ["train.py", "task=lm", "data.streaming=no", f"hydra.run.dir={tmp / 'f'}"],
        ),
    }
    with ThreadPoolExecutor(len(commands)) as pool:
        futures = {name: pool.submit(run, *command) for name, command in commands.items()}
    return {name: future.result() for name, future in futures.items()}


def error_line(proc) -> str:
    """The one `error:` line a user error prints; no traceback, exit code 2."""
    assert proc.returncode == EXIT_USER_ERROR == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and proc.stderr.rstrip().endswith(errors[0])
    return errors[0]


def words(proc) -> list[str]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [tagged["word"] for tagged in json.loads(proc.stdout)]


def test_a_bad_train_value_is_named_before_anything_is_built(runs):
    line = error_line(runs["max_epochs"])
    assert line == (
        "error: trainer.max_epochs must be null or a whole number >= -1 (-1: no limit), got 'abc'"
    )


def test_a_value_the_data_module_refuses_is_one_line_naming_its_key(runs):
    # Raised inside Hydra's instantiate, which wraps it in lines of its own.
    assert error_line(runs["lm name"]) == (
        "error: data: name='ptb2' is not valid; choose one of ['ptb', 'wikitext2']"
    )
    assert error_line(runs["streaming"]).startswith(
        "error: data.streaming=true reads local files: set data.path=<a folder with ptb."
    )
    assert error_line(runs["streaming flag"]) == (
        "error: data.streaming must be true or false, got 'no'"
    )


def test_hydra_full_error_shows_the_traceback(runs):
    proc = runs["max_epochs full error"]
    assert proc.returncode not in (0, EXIT_USER_ERROR)
    assert "Traceback" in proc.stderr and "ConfigError: trainer.max_epochs must be" in proc.stderr


def test_debug_shows_the_traceback_and_a_bug_always_does(capsys):
    with pytest.raises(ConfigError), user_errors(OmegaConf.create({"debug": True})):
        raise ConfigError("k must be 1")
    with pytest.raises(KeyError), user_errors(OmegaConf.create({"debug": False})):
        raise KeyError("a bug")
    with pytest.raises(ValueError), user_errors():  # raised outside rnn_tasks: a bug too
        torch.nn.functional.cross_entropy(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(SystemExit) as stop, user_errors(OmegaConf.create({"debug": False})):
        raise ConfigError("k must be 1")
    assert stop.value.code == 2 and capsys.readouterr().err == "error: k must be 1\n"


def test_a_missing_or_wrong_checkpoint_is_named(runs, tmp_path, capsys):
    line = error_line(runs["missing ckpt"])
    assert line.startswith("error: checkpoint not found: ") and line.endswith("none.ckpt")
    from rnn_tasks.tasks import load_task

    not_one = tmp_path / "notes.txt"
    not_one.write_text("hello")
    with pytest.raises(SystemExit) as stop, user_errors():  # as the scripts run it
        load_task(not_one)
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: {not_one} is not a checkpoint")


def test_a_text_is_taken_literally(runs):
    assert words(runs["literal text"]) == ["pay", "$", "{", "amount", "}", "now"]


@pytest.mark.parametrize(
    ("typed", "text"),
    [("text=${oc.env:HOME}", "${oc.env:HOME}"), ("text='${x}, ${y}'", "${x}, ${y}"),
     ("text=pay ${amount} now", "pay ${amount} now"), ('text="3 cats"', "3 cats"),
     ("text=2020", "2020"), ("text=null", "null"), (r"text=a\,b", "a,b")],
)  # fmt: skip
def test_text_setting_reads_the_override_as_typed(typed, text):
    cfg = predict_config(typed)
    assert text_setting(cfg, "text") == text
    assert text_input(cfg, "text", "text_file") == text


def test_a_text_is_read_from_standard_input(runs):
    assert words(runs["stdin"]) == ["Pay", "$", "{", "amount", "}", ",", "'", "now", "'"]


def test_text_and_text_file_are_one_or_the_other(tmp_path):
    with pytest.raises(ConfigError, match=r"^give text or text_file, not both \(text_file=-\)"):
        text_input(predict_config("text=hi", "text_file=-"), "text", "text_file")
    with pytest.raises(ConfigError, match=r"^give text=\.\.\. or text_file=PATH"):
        text_input(predict_config(), "text", "text_file")
    file = tmp_path / "t.txt"
    file.write_text("${x} 1\n2\n")  # one text, the last line break dropped
    assert text_input(predict_config(f"text_file={file}"), "text", "text_file") == "${x} 1\n2"
    file.write_bytes(b"caf\xe9")
    with pytest.raises(ValueError, match=r"t.txt: not UTF-8 text \("):
        text_input(predict_config(f"text_file={file}"), "text", "text_file")


def test_generation_limits_are_checked(runs):
    assert error_line(runs["nan"]) == (
        "error: temperature must be a finite number >= 0 (0: greedy), got nan"
    )
    assert error_line(runs["too long"]) == (
        "error: max_new_tokens must be a whole number in [0, 10000], got 1000000000"
    )
    assert "is a 'pos' checkpoint; generation needs a language model" in error_line(
        runs["not an lm"]
    )


def test_evaluate_names_an_empty_file_and_a_wrong_split(runs):
    line = error_line(runs["empty file"])
    assert line.startswith("error: ") and line.endswith("empty.conllu holds no examples")
    assert error_line(runs["split"]) == (
        "error: split must be one of ['test', 'validation'], got 'train'"
    )


def test_an_ensemble_on_several_processes_is_refused(tmp_path):
    """An ensemble trains its members one after another on one device: two CPU processes
    are refused in one line before a member is trained."""
    proc = run(["train.py", "task=cls", "ensemble_size=2", "trainer.accelerator=cpu",
                "trainer.strategy=ddp", "trainer.devices=2",
                f"hydra.run.dir={tmp_path}"])  # fmt: skip
    line = error_line(proc)
    assert line.startswith("error: trainer.devices=2, trainer.num_nodes=1: an ensemble trains")
    assert "(trainer.devices=1)" in line
    assert not (tmp_path / "seed42").exists()
