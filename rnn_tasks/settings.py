"""How a run's settings differ from those a checkpoint, or a finished run, was trained
with: what resuming, evaluating and rerunning an ensemble must not change."""

from __future__ import annotations

from collections.abc import Iterable

from hydra.utils import get_class


def changes(old: dict, new: dict, keys: Iterable[str], prefix: str = "") -> list[str]:
    """`"{prefix}{key}={old!r} (this run: {new!r})"` for each of `keys` set differently.

    A key `old` lacks is skipped: checkpoints written before a setting existed lack it.
    """
    return [
        f"{prefix}{key}={old[key]!r} (this run: {new.get(key)!r})"
        for key in keys
        if key in old and old[key] != new.get(key)
    ]


def with_legacy_defaults(trained: dict) -> dict:
    """A checkpoint's data config with the settings it predates filled in with what they
    meant then (`legacy_defaults`), not today's defaults."""
    target = trained.get("_target_")
    return {**get_class(target).legacy_defaults, **trained} if target else trained


def fixed_data_changes(trained: dict, data: dict, resume: bool = False) -> list[str]:
    """The data settings of `data` that differ from `trained` (a checkpoint's data config)
    among those its DataModule declares fixed: the split and the lookup (`fixed_settings`),
    and for a resumed run also the corpus (`source_settings`). Another DataModule class
    is a change too."""
    old, new = trained.get("_target_"), data.get("_target_")
    if old is None or new is None:
        return []
    if get_class(old) is not get_class(new):
        return [f"data._target_={old!r} (this run: {new!r})"]
    cls = get_class(old)
    keys = cls.fixed_settings + (cls.source_settings if resume else ())
    return changes(with_legacy_defaults(trained), data, keys, prefix="data.")


def flatten(config: dict, prefix: str = "") -> dict:
    """Nested dicts as one dict with dotted keys: {"a": {"b": 1}} -> {"a.b": 1}."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
