"""A trained model without Lightning: its weights and what rebuilds it, in a folder.

    python scripts/export.py ckpt_path=runs/.../best.ckpt out=exported/
    predictor = rnn_tasks.load_model("exported/")   # torch, safetensors and json only
    predictor.predict(["WINNER! Claim your prize now"])

The folder holds two files:

- `model.safetensors`: the model's `state_dict()`, its parameters and persistent buffers
  (the pretrained vectors of `fixed_embedding` too), and nothing of the optimiser;
- `config.json`: the task, the model's class and constructor arguments (`model_spec`, the
  one place that maps a task's hyperparameters to its model), the text pipeline
  (`TextPipeline.to_dict()`), the labels, tags or sentence boundary, the rnn_tasks version
  and the weights' SHA-256, so that a changed or swapped weights file is refused.

`load_model` returns the task's predictor (`rnn_tasks.inference`), so an export predicts
exactly as the checkpoint's task does. `export_program` turns a model into a
`torch.export.ExportedProgram` with a dynamic batch size and length.

This module imports no lightning, hydra or datasets (a test checks it).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model as _load_weights
from safetensors.torch import save_model as _save_weights
from torch import Tensor, nn

from .files import new_file_mode
from .inference import ClassifierPredictor, LMPredictor, TaggerPredictor
from .models import CharEncoder, FeedForwardLM, LanguageModel
from .specs import MODELS, TASKS, model_spec
from .text.pipeline import TextPipeline

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
PROGRAM = "model.pt2"
FORMAT = "rnn-tasks-export"
FORMAT_VERSION = 1
Predictor = ClassifierPredictor | TaggerPredictor | LMPredictor


# -- writing and reading an export ---------------------------------------------------------


def save_export(task, out: str | Path) -> dict[str, Path]:
    """Write `task`'s model to the folder `out` (made if needed): `model.safetensors` and
    `config.json`. `task` is a trained `LanguageModelTask`, `TaggingTask` or
    `ClassificationTask` (read for `task_name`, `hparams`, `model` and `pipeline`).

    Returns the paths written, by file name.
    """
    from . import __version__  # here: the package imports this module

    name, kwargs = model_spec(task.task_name, task.hparams)
    model = task.model
    if type(model).__name__ != name:
        raise ValueError(f"the task's model is a {type(model).__name__}, its hparams a {name}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"out={out} is a file; an export is a folder")
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS
    # save_model (not save_file): tied weights (`tie_weights`) are stored once.
    _save_weights(model, str(weights), metadata={"format": FORMAT})
    os.chmod(weights, new_file_mode())  # safetensors writes 0600
    config: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "rnn_tasks_version": __version__,
        "task": task.task_name,
        "model": {"class": name, "kwargs": kwargs},
        "pipeline": task.pipeline.to_dict(),
    }
    if task.task_name == "lm":
        config["boundary"] = task.hparams.get("boundary", "<eos>")
    else:
        key = "tags" if task.task_name == "pos" else "labels"
        config[key] = list(task.hparams[key])
    config["weights_sha256"] = _sha256(weights)
    (out / CONFIG).write_text(json.dumps(config, indent=1, ensure_ascii=False) + "\n")
    return {WEIGHTS: weights, CONFIG: out / CONFIG}


def load_model(path: str | Path, device: str | torch.device = "cpu") -> Predictor:
    """The exported model in folder `path` as its task's predictor, in eval mode:
    `ClassifierPredictor` (`predict`, `predict_proba`), `TaggerPredictor` (`predict`) or
    `LMPredictor` (`next_words`, `prob`, `score`). Its `.model` is the plain torch module.

    Raises:
        FileNotFoundError: if the folder, its `config.json` or `model.safetensors` is missing.
        ValueError: naming the file, if one of them is not what `save_export` wrote.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"no exported model at {folder} (scripts/export.py writes one)")
    config = read_config(folder / CONFIG)
    spec = config["model"]
    try:
        model = MODELS[spec["class"]](**spec["kwargs"])
    except (TypeError, ValueError) as err:
        built = f"model.kwargs do not build a {spec['class']}"
        raise ValueError(f"{folder / CONFIG}: {built}: {err}") from None
    load_weights(model, folder / WEIGHTS, config["weights_sha256"])
    model.to(device).eval()
    pipeline = TextPipeline.from_dict(config["pipeline"])
    if config["task"] == "lm":
        return LMPredictor(model, pipeline, config["boundary"])
    if config["task"] == "pos":
        return TaggerPredictor(model, pipeline, config["tags"])
    return ClassifierPredictor(model, pipeline, config["labels"])


def read_config(path: Path) -> dict:
    """`config.json` of an export, checked for what `load_model` reads."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: an export folder holds {CONFIG} and {WEIGHTS}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"{path} is not the config of an rnn-tasks export (no format {FORMAT!r})")
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {config.get('format_version')!r}; this rnn_tasks "
            f"reads version {FORMAT_VERSION}"
        )
    task = config.get("task")
    needed = {"lm": "boundary", "pos": "tags", "cls": "labels"}.get(task)
    if needed is None:
        raise ValueError(f"{path}: task must be one of {list(TASKS)}, got {task!r}")
    for key in ("model", "pipeline", "weights_sha256", needed):
        if key not in config:
            raise ValueError(f"{path} lacks {key!r}")
    spec = config["model"]
    if not isinstance(spec, dict) or spec.get("class") not in MODELS:
        raise ValueError(f"{path}: model.class must be one of {sorted(MODELS)}")
    if not isinstance(spec.get("kwargs"), dict):
        raise ValueError(f"{path}: model.kwargs must be an object")
    return config


def load_weights(model: nn.Module, path: Path, sha256: str) -> None:
    """Fill `model` from `path` (safetensors), which must have the checksum `sha256` and
    hold exactly the model's tensors."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: an export folder holds {CONFIG} and {WEIGHTS}")
    if _sha256(path) != sha256:
        raise ValueError(
            f"{path} is not the weights file {CONFIG} was written with (its SHA-256 differs): "
            "it was changed, or belongs to another export"
        )
    try:
        missing, unexpected = _load_weights(model, str(path), strict=False)
    except (SafetensorError, RuntimeError, OSError) as err:
        raise ValueError(f"{path} cannot be read into {type(model).__name__}: {err}") from None
    if missing or unexpected:
        raise ValueError(
            f"{path} does not fit {type(model).__name__}: missing {sorted(missing)}, "
            f"unexpected {sorted(unexpected)}"
        )


def size_report(ckpt_path: str | Path, paths: Mapping[str, Path]) -> str:
    """The checkpoint's size against the export's, file by file."""
    ckpt = Path(ckpt_path).stat().st_size
    sizes = {name: Path(p).stat().st_size for name, p in paths.items()}
    export = sum(size for name, size in sizes.items() if name != PROGRAM)
    lines = [f"checkpoint {ckpt_path}: {_kb(ckpt)}"]
    lines += [f"  {Path(paths[name])}: {_kb(size)}" for name, size in sizes.items()]
    share = f"{export / ckpt:.0%} of the checkpoint"
    lines.append(f"export ({WEIGHTS} + {CONFIG}): {_kb(export)}, {share}")
    return "\n".join(lines)


def _kb(size: int) -> str:
    return f"{size / 1024:,.1f} KiB"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- torch.export ---------------------------------------------------------------------------


def example_inputs(model: nn.Module, batch: int = 2, length: int = 3) -> tuple[Tensor, ...]:
    """Inputs `export_program` can trace `model` with: `(tokens,)` for a language model,
    `(tokens, lengths)` for a tagger or classifier, `+ (chars,)` when it spells its words.
    `batch` and `length` should be >= 2: torch.export takes a size of 1 for a constant."""
    tokens = torch.ones(batch, length, dtype=torch.long)
    if isinstance(model, (LanguageModel, FeedForwardLM)):
        return (tokens,)
    lengths = torch.full((batch,), length)
    lengths[-1] = max(1, length - 1)  # some padding, so the mask is not constant
    if any(isinstance(m, CharEncoder) for m in model.modules()):
        return tokens, lengths, torch.ones(batch, length, 4, dtype=torch.long)
    return tokens, lengths


def export_program(
    model: nn.Module, example: tuple[Tensor, ...] | None = None, max_length: int = 4096
) -> torch.export.ExportedProgram:
    """`torch.export` of `model`'s forward (in eval mode), with a dynamic batch size and
    length (and characters per word): `(tokens (B, T),)` for a `LanguageModel` (its logits
    and final state) or `FeedForwardLM`, `(tokens (B, T), lengths (B,)[, chars (B, T, L)])`
    for a `Tagger` or `Classifier`. `example` defaults to `example_inputs(model)`.

    The recurrence is exported as a `scan` over time (`rnn_tasks.nn.recurrence`); lengths
    are not checked inside the program: each must lie in [1, T].
    """
    from torch.export import Dim

    example = example_inputs(model) if example is None else tuple(example)
    batch = Dim("batch", min=1, max=1 << 16)
    length = Dim("length", min=1, max=max_length)
    shapes: list[dict[int, Any]] = [{0: batch, 1: length}]  # tokens
    if len(example) > 1:
        shapes.append({0: batch})  # lengths
    if len(example) > 2:
        shapes.append({0: batch, 1: length, 2: Dim("chars", min=1, max=max_length)})
    model.eval()
    with torch.no_grad():
        return torch.export.export(model, example, dynamic_shapes=tuple(shapes))


def save_program(model: nn.Module, out: str | Path) -> dict[str, Path]:
    """`export_program(model)` saved as `out/model.pt2` (`torch.export.save`); load it with
    `torch.export.load(path).module()`."""
    path = Path(out) / PROGRAM
    torch.export.save(export_program(model), path)
    return {PROGRAM: path}
