"""What every entry point does the same way: torch threads, denormal floats, one console
handler for log lines, and text settings read as typed."""

from __future__ import annotations

import logging

import torch


def set_up_process(threads: int | None = None, flush_denormal: bool | None = None) -> None:
    """`threads`: torch's CPU threads (None keeps torch's default, every core).
    `flush_denormal`: treat denormal floats as zero on CPU (None leaves it as it is)."""
    one_console_handler()
    if threads:
        torch.set_num_threads(threads)
    if flush_denormal is not None:
        # Vanishing errors in BPTT reach denormal floats, which x86 CPUs handle ~30x
        # slower (measured: an Elman LM step went from 0.15 s to 4.6 s); flushing them
        # to zero costs nothing the model can notice.
        torch.set_flush_denormal(flush_denormal)


def one_console_handler() -> None:
    # `import lightning` gives the "lightning" logger a console handler of its own; under
    # Hydra the root logger prints (and writes train.log) too, so every line came twice.
    if logging.getLogger().hasHandlers():
        logging.getLogger("lightning").handlers.clear()


def text_setting(cfg, key: str) -> str:
    """`cfg[key]` as it was typed on the command line: Hydra reads a bare `text=2020` as a
    number (and `true`, `null` as a bool and None), which a text to tag, classify or
    continue must not become; `text=null` is the text "null"."""
    value = cfg[key]
    if isinstance(value, str):
        return value
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():  # a composed config has no command line to read
        for override in HydraConfig.get().overrides.task:
            name, _, typed = override.partition("=")
            if name.lstrip("+~") == key:
                return typed
    return "" if value is None else str(value)
