"""File permissions: what a file written through a private temporary file should get."""

from __future__ import annotations

import os


def new_file_mode() -> int:
    """The mode a newly created file gets under the process's umask (0644 under 022).

    `tempfile.mkstemp` creates 0600 files and safetensors writes 0600 too; a checkpoint or an
    export chmod-ed to this is as readable as any other file the user writes.
    """
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return 0o666 & ~mask
