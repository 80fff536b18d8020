"""results/README.md's experiment table quotes the figures its runs wrote to `results/*.json`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def percent(x: float) -> str:
    return f"{100 * x:.2f}%"


def one_decimal(x: float) -> str:
    return f"{x:.1f}"


def three_decimals(x: float) -> str:
    return f"{x:.3f}"


# experiment: the headline metrics as the README writes them. The tagger's dev
# accuracy is its test/* figure: with no test split, its best checkpoint is tested on dev.
HEADLINES = {
    "ptb_elman": {"test/ppl": one_decimal},
    "ptb_lstm": {"test/ppl": one_decimal},
    "ptb_lstm_awd": {"test/ppl": one_decimal},
    "ptb_elman_awd": {"test/ppl": one_decimal},
    "ptb_ffnn": {"test/ppl": one_decimal},
    "ptb_lstm_medium": {"test/ppl": one_decimal},
    "ud_pos": {"test/acc": percent},
    "ud_pos_glove": {"test/acc": percent},
    "ud_pos_glove_words": {"test/acc": percent},
    "sms_spam": {"test/acc": percent, "test/f1": three_decimals},
    "sms_spam_ensemble": {"test/acc": percent, "test/f1": three_decimals},
}


def table_rows(experiment: str) -> list[str]:
    """The README table rows whose command runs `experiment` once (not a `-m` sweep)."""
    lines = (ROOT / "results" / "README.md").read_text(encoding="utf-8").splitlines()
    return [
        line
        for line in lines
        if line.startswith("|")
        and " -m " not in line
        and any(f"experiment={experiment}{end}" in line for end in (" ", "`"))
    ]


@pytest.mark.parametrize("experiment", sorted(HEADLINES))
def test_readme_quotes_each_experiments_results_file(experiment):
    result = json.loads((ROOT / "results" / f"{experiment}.json").read_text(encoding="utf-8"))
    rows = table_rows(experiment)
    assert rows, f"no README table row runs experiment={experiment}"
    for row in rows:
        for key, written in HEADLINES[experiment].items():
            figure = written(result["metrics"][key])
            quoted = re.search(rf"(?<![\d.]){re.escape(figure)}(?![\d])", row)
            assert quoted, f"{experiment}: README row lacks {key} = {figure}"
    millions = result["parameters"] / 1e6
    parameters = f"{millions:.{2 if millions < 1 else 1}f}M parameters"  # 0.54M, 13.3M
    assert any(parameters in row for row in rows), f"{experiment}: README lacks {parameters}"


def test_every_experiment_config_has_its_readme_row_checked():
    configs = {p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml")}
    assert configs == set(HEADLINES)
