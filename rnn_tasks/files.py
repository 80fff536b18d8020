"""Where files go: the permissions a privately written file should get, and the cache."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "RNN_TASKS_CACHE"  # moves the cache (default ~/.cache/rnn_tasks)


def cache_root() -> Path:
    """The folder for what can be rebuilt: measured choices, Arrow copies of data files."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "rnn_tasks")


def new_file_mode() -> int:
    """The mode a newly created file gets under the process's umask (0644 under 022).

    `tempfile.mkstemp` creates 0600 files and safetensors writes 0600 too; a checkpoint or an
    export chmod-ed to this is as readable as any other file the user writes.
    """
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return 0o666 & ~mask
