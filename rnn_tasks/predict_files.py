"""Prediction over files, streamed: any number of lines in bounded memory, batched by
length (`rnn_tasks.inference`), results written in the input's order as they come.

Input formats:
    lines   one text per line (every task)
    conllu  CoNLL-U sentences (tagging): written back as CoNLL-U with UPOS filled in
    tsv     `label<TAB>text` lines (classification): the gold label is kept beside the
            prediction
Output: JSON Lines, one object per input text (or CoNLL-U for a CoNLL-U input).

Pure torch and python: works on a `load_task(...).predictor` and on `load_model(...)` alike.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import IO, Literal

Format = Literal["auto", "lines", "conllu", "tsv"]
CHUNK = 4096  # texts read, predicted and written at a time: memory stays bounded


def detect_format(path: str, task: str) -> str:
    """`conllu` for a .conllu/.conll file, `tsv` for a .tsv file, else `lines`."""
    suffix = Path(path).suffix.lower()
    if suffix in (".conllu", ".conll"):
        return "conllu"
    if suffix == ".tsv" and task == "cls":
        return "tsv"
    return "lines"


def check_format(fmt: str, task: str) -> None:
    allowed = {"lm": ("lines",), "pos": ("lines", "conllu"), "cls": ("lines", "tsv")}[task]
    if fmt not in allowed:
        raise ValueError(f"format={fmt} does not fit a {task!r} model: use one of {allowed}")


def read_lines(f: IO[str], name: str) -> Iterator[dict]:
    for n, line in enumerate(f, 1):
        yield {"text": line.rstrip("\r\n"), "line": n}


def read_tsv(f: IO[str], name: str) -> Iterator[dict]:
    for n, line in enumerate(f, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        label, tab, text = line.partition("\t")
        if not tab:
            raise ValueError(f"{name}:{n}: expected `label<TAB>text`, found no tab")
        yield {"text": text, "gold": label, "line": n}


def read_conllu(f: IO[str], name: str) -> Iterator[dict]:
    """Sentences with their lines as read, and the words of their word lines (an integer
    ID: multiword tokens `1-2` and empty nodes `1.1` are kept but not tagged)."""
    lines: list[str] = []
    words: list[str] = []
    first = 1
    for n, line in enumerate(f, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            if lines:
                yield {"lines": lines, "words": words, "line": first}
            lines, words, first = [], [], n + 1
            continue
        lines.append(line)
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise ValueError(f"{name}:{n}: a CoNLL-U word line has 10 tab-separated columns, "
                             f"found {len(cols)}")  # fmt: skip
        if cols[0].isdigit():
            words.append(cols[1])
    if lines:
        yield {"lines": lines, "words": words, "line": first}


READERS = {"lines": read_lines, "tsv": read_tsv, "conllu": read_conllu}


def chunks(items: Iterable[dict], size: int) -> Iterator[list[dict]]:
    items = iter(items)
    while chunk := list(islice(items, size)):
        yield chunk


def predict_chunk(predictor, task: str, items: list[dict], probs: bool = False) -> list[str]:
    """The output lines for `items`, in order."""
    if task == "cls":
        results = predictor.predict_proba([it["text"] for it in items])
        out = []
        for it, p in zip(items, results, strict=True):
            label = max(p, key=p.get)
            row = {"text": it["text"], "label": label, "p": p[label], "probs": p}
            if "gold" in it:
                row["gold"] = it["gold"]
            out.append(json.dumps(row, ensure_ascii=False))
        return out
    if task == "pos":
        conllu = "words" in items[0]
        sentences = [it["words"] if conllu else it["text"] for it in items]
        tagged = predictor.predict(sentences, probs=probs)
        if conllu:  # a sentence's lines and the blank line that ends it
            pairs = zip(items, tagged, strict=True)
            return ["\n".join(fill_upos(it["lines"], t)) + "\n" for it, t in pairs]
        out = []
        for it, t in zip(items, tagged, strict=True):
            row = {"text": it["text"], "words": [x[0] for x in t], "tags": [x[1] for x in t]}
            if probs:
                row["probs"] = [x[2] for x in t]
            out.append(json.dumps(row, ensure_ascii=False))
        return out
    scores = predictor.score([it["text"] for it in items])
    return [
        json.dumps({"text": it["text"], **s}, ensure_ascii=False)
        for it, s in zip(items, scores, strict=True)
    ]


def fill_upos(lines: list[str], tagged: list) -> list[str]:
    """A sentence's CoNLL-U lines with each word line's UPOS (column 4) the predicted tag."""
    tags = iter(t[1] for t in tagged)
    out = []
    for line in lines:
        cols = line.split("\t")
        if not line.startswith("#") and cols[0].isdigit():
            cols[3] = next(tags)
        out.append("\t".join(cols))
    return out


def predict_file(
    predictor,
    task: str,
    source: str,
    target: str = "-",
    fmt: Format = "auto",
    probs: bool = False,
    progress: bool = True,
) -> int:
    """Predicts every text of `source` into `target` (`-`: standard input / output).

    Returns the number of texts (sentences, messages, lines) predicted.
    """
    fmt = detect_format(source, task) if fmt == "auto" else fmt
    check_format(fmt, task)
    if source != "-" and target != "-" and Path(source).resolve() == Path(target).resolve():
        raise ValueError(f"output={target} is the input file: writing it would erase the input")
    name = "<stdin>" if source == "-" else source
    reader = sys.stdin if source == "-" else open(source, encoding="utf-8")  # noqa: SIM115
    writer = sys.stdout if target == "-" else open(target, "w", encoding="utf-8")  # noqa: SIM115
    bar = progress_bar(progress, source)
    done = 0
    try:
        for chunk in chunks(READERS[fmt](reader, name), CHUNK):
            for line in predict_chunk(predictor, task, chunk, probs):
                writer.write(line + "\n")
            writer.flush()
            done += len(chunk)
            bar.update(len(chunk))
    except UnicodeDecodeError as err:
        raise ValueError(f"{name} is not UTF-8 text ({err.reason} at byte {err.start})") from err
    finally:
        bar.close()
        if reader is not sys.stdin:
            reader.close()
        if writer is not sys.stdout:
            writer.close()
    return done


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(show: bool, source: str):
    """A progress bar on standard error (texts done, texts per second)."""
    if not show:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(desc=f"predicting {source}", unit=" texts", file=sys.stderr, mininterval=0.5)
