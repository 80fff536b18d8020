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


def fixed_data_changes(trained: dict, data: dict) -> list[str]:
    """The data settings of `data` that differ from `trained` (a checkpoint's data config)
    among those its DataModule declares fixed (`fixed_settings`: the split, the lookup)."""
    target = trained.get("_target_")
    if target is None or target != data.get("_target_"):
        return []
    return changes(trained, data, get_class(target).fixed_settings, prefix="data.")


def flatten(config: dict, prefix: str = "") -> dict:
    """Nested dicts as one dict with dotted keys: {"a": {"b": 1}} -> {"a.b": 1}."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
