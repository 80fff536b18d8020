import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors run fastest on one thread, which also keeps a busy machine's
    thread-pool stalls out of the suite's run time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def load_script():
    """Imports a file of `scripts/` or `benchmarks/` (not a package) as a module."""

    def load(relative_path: str):
        path = ROOT / relative_path
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
