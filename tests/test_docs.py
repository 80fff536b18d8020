"""The commands and code the README and docs show still work: every `python scripts/*.py`
line composes with the configs and passes their checks (a renamed key or a bad value
fails here), and the README's Python block runs on real checkpoints."""

import re
import shlex
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from test_train import LM_TINY, make_cfg

from rnn_tasks.config_checks import validate_tool_config, validate_train_config
from rnn_tasks.export import save_export
from rnn_tasks.tasks import load_task
from rnn_tasks.train import train

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "results" / "README.md"]
HYDRA_SCRIPTS = {"train", "evaluate", "predict", "generate", "export"}
SCRIPT = re.compile(r"python3? scripts/(\w+)\.py\b(.*)")


def bash_lines(text: str) -> list[str]:
    """Lines of ```bash blocks, and inline code spans, that run a script."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        lines += re.sub(r"\\\n\s*", "", block).splitlines()  # a command over several lines
    lines += re.findall(r"`([^`\n]*python3? scripts/[^`\n]*)`", text)
    return [line for line in lines if "scripts/" in line]


def commands() -> list[tuple[str, str, list[str]]]:
    """(page, script, overrides) of every script command of the README and docs."""
    found = []
    for page in PAGES:
        for line in bash_lines(page.read_text(encoding="utf-8")):
            for part in line.split("&&"):
                match = SCRIPT.search(part.split(" # ")[0].split("  #")[0])
                if match:
                    args = shlex.split(match.group(2).split(" < ")[0])
                    found.append((page.name, match.group(1), args))
    return found


COMMANDS = commands()
ANY_FILE = str(Path(__file__).resolve())  # stands for <pos.ckpt>, outputs/<time>/...


def as_composable(args: list[str]) -> tuple[list[str], bool]:
    """The overrides of a command line with placeholders filled in; a sweep (`-m`) as its
    first job. Returns (overrides, is a sweep)."""
    sweep = "-m" in args
    out = []
    for arg in args:
        if arg == "-m" or not arg or "=" not in arg:
            continue
        key, _, value = arg.partition("=")
        if value.startswith("[") and ".ckpt" in value:  # an ensemble's checkpoints
            value = f"[{ANY_FILE},{ANY_FILE}]"
        elif "<" in value or value.startswith("outputs/"):
            value = ANY_FILE
        elif sweep and "," in value and not value.startswith("["):
            value = value.split(",")[0]
        out.append(f"{key}={value}")
    return out, sweep


def test_the_pages_show_commands_of_every_script():
    assert {script for _, script, _ in COMMANDS} >= HYDRA_SCRIPTS | {"plot"}


@pytest.mark.parametrize(
    "page,script,args",
    [c for c in COMMANDS if c[1] in HYDRA_SCRIPTS],
    ids=[f"{c[0]}:{c[1]} {' '.join(c[2])[:60]}" for c in COMMANDS if c[1] in HYDRA_SCRIPTS],
)
def test_a_shown_command_composes_and_passes_the_config_checks(page, script, args):
    overrides, _ = as_composable(args)
    name = "train" if script == "train" else script
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(name, overrides=overrides)
    if script == "train":
        validate_train_config(cfg)
    else:
        validate_tool_config(cfg)


def test_plot_commands_name_a_run_folder():
    for _, script, args in COMMANDS:
        if script == "plot":
            assert args and not args[0].startswith("-"), args


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A tiny LM checkpoint and a tiny tagger's export, for the README's Python block."""
    tiny = ["model.embedding_dim=16", "model.hidden_size=16", "~logger", "trainer.max_epochs=1",
            "threads=1", "trainer.enable_progress_bar=false"]  # fmt: skip
    threads = torch.get_num_threads()
    lm, pos = tmp_path_factory.mktemp("lm"), tmp_path_factory.mktemp("pos")
    train(make_cfg(lm, ["task=lm", *LM_TINY, *tiny]))
    train(make_cfg(pos, ["task=pos", *tiny]))
    torch.set_num_threads(threads)
    save_export(load_task(pos / "checkpoints" / "best.ckpt"), pos / "export")
    return lm / "checkpoints" / "best.ckpt", pos / "export"


def test_the_readmes_python_block_runs(artifacts):
    lm_ckpt, export = artifacts
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"## In Python\n\n```python\n(.*?)```", text, flags=re.S)
    code = block.replace('"outputs/lm/<time>/checkpoints/best.ckpt"', repr(str(lm_ckpt)))
    code = code.replace('"my_model/"', repr(str(export)))
    assert "<" not in code.replace("<=", "")  # every placeholder filled
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102
    assert scope["out"].shape == (4, 7, 40)
    assert len(scope["tagger"].predict(["I like green tea .", "Where is it ?"])) == 2


def test_the_lecture_walkthrough_runs_as_written():
    import doctest

    threads = torch.get_num_threads()
    try:
        result = doctest.testfile(
            str(ROOT / "docs" / "lecture.md"), module_relative=False, optionflags=doctest.ELLIPSIS
        )
    finally:
        torch.set_num_threads(threads)  # the page sets one thread
    assert result.attempted > 50 and result.failed == 0, result
