"""`rnn_tasks.nn`, the models, inference on text (and the package root) need torch alone:
no lightning, hydra or datasets."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("lightning", "pytorch_lightning", "lightning_fabric", "hydra", "omegaconf", "datasets")

SCRIPT = f"""
import importlib.util, json, sys
import rnn_tasks.nn, rnn_tasks
checked = ["rnn_tasks.nn", "rnn_tasks"]
for name in ("rnn_tasks.models", "rnn_tasks.inference", "rnn_tasks.predict_files",
             "rnn_tasks.text.pipeline"):  # using a trained model needs torch alone too
    importlib.import_module(name)
    checked.append(name)
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
print(json.dumps({{"checked": checked, "heavy": heavy}}))
"""


def test_nn_imports_torch_only():
    # A fresh interpreter: this test process may already hold lightning from other tests.
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=120
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "rnn_tasks.nn" in report["checked"]
    assert report["heavy"] == [], f"{report['checked']} imported {report['heavy']}"
