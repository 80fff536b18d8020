import importlib.util
import os
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[1]
# `matmul=auto` keeps its measured choice here rather than in the user's ~/.cache: one
# choice for the whole session, its subprocesses included (rnn_tasks/nn/matmul.py).
os.environ.setdefault("RNN_TASKS_CACHE", tempfile.mkdtemp(prefix="rnn_tasks_cache_"))
# Without a GPU, Triton kernels (rnn_tasks/nn/fused.py) run in Triton's interpreter, on the
# CPU; it is chosen when a kernel is defined, so before rnn_tasks is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# The benchmark data beside the checkout, as configs/train.yaml's `data_root` finds it.
DATA = Path(os.environ.get("RNN_TASKS_DATA") or ROOT.parent / "shared" / "data").resolve()


def pytest_runtest_setup(item):
    """`@pytest.mark.needs_data("ptb")`: skipped, saying what is missing, where the local
    copy of that benchmark data is not (pytest -ra lists the reasons)."""
    for marker in item.iter_markers("needs_data"):
        for name in marker.args:
            if not (DATA / name).exists():
                pytest.skip(f"needs the benchmark data {DATA / name} (set RNN_TASKS_DATA)")


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
