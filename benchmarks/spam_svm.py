"""The spam row's anchors, linear models, on the very splits `experiment=sms_spam` uses.

Published SMS-spam figures (a linear SVM at about 98.5% accuracy, spam recall about 0.90)
come from other splits of the 5,574-message collection, duplicates included. This measures
the anchors on ours, fitted on the train split of each seeded stratified split that
`ClassificationDataModule` makes, scored on its validation and test splits:

- `--features word --classifier svm` (the default): TF-IDF words and scikit-learn's
  `LinearSVC`, their defaults: the usual baseline;
- `--features word+char`: word TF-IDF plus character n-gram TF-IDF (`analyzer="char_wb"`,
  n 2-5), both with sublinear tf, defaults otherwise: the strong baseline a user would
  reach for, with `--classifier svm` or `--classifier logreg` (`LogisticRegression`).

    pip install -e ".[dev]"                 # scikit-learn comes with the dev extras
    python benchmarks/spam_svm.py           # the experiment's split (seed 42) and nine more
    python benchmarks/spam_svm.py --features word+char --out results/sms_spam_svm_char.json
    python benchmarks/spam_svm.py --features word+char --classifier logreg \
        --out results/sms_spam_logreg_char.json

It prints a table and writes JSON (default `results/sms_spam_svm.json`). A measurement,
not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import sklearn  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import precision_recall_fscore_support  # noqa: E402
from sklearn.pipeline import FeatureUnion  # noqa: E402
from sklearn.svm import LinearSVC  # noqa: E402

from rnn_tasks.data.sources import load_spam  # noqa: E402
from rnn_tasks.train import git_revision  # noqa: E402

DATA_CONFIG = ROOT / "configs" / "data" / "sms_spam.yaml"
METRICS = ("acc", "precision", "recall", "f1")
CLASSIFIERS = {"svm": LinearSVC, "logreg": lambda: LogisticRegression(max_iter=1000)}
DESCRIPTIONS = {
    "word": "TfidfVectorizer()",
    "word+char": 'TfidfVectorizer(sublinear_tf=True) + TfidfVectorizer(analyzer="char_wb", '
    "ngram_range=(2, 5), sublinear_tf=True)",
    "svm": "LinearSVC()",
    "logreg": "LogisticRegression(max_iter=1000)",
}


def vectorizer_for(features: str):
    """The TF-IDF features: words, or words and character n-grams side by side."""
    if features == "word":
        return TfidfVectorizer()
    return FeatureUnion([
        ("word", TfidfVectorizer(sublinear_tf=True)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)),
    ])  # fmt: skip


def binary_metrics(truth: list[bool], predicted: list[bool]) -> dict[str, float]:
    """Accuracy, and precision, recall and F1 of the positive class (spam)."""
    precision, recall, f1, _ = precision_recall_fscore_support(
        truth, predicted, average="binary", zero_division=0
    )
    errors = sum(t != p for t, p in zip(truth, predicted, strict=True))
    return {
        "acc": 1 - errors / len(truth),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "errors": errors,
        "messages": len(truth),
        "spam": sum(truth),
    }


def svm_on_split(
    path: str | Path,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    group_duplicates: bool = True,
    features: str = "word",
    classifier: str = "svm",
):
    """Fits TF-IDF + a linear classifier on one seeded split's train part; metrics per
    held-out split."""
    splits = load_spam(
        path,
        hub=None,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        group_duplicates=group_duplicates,
    )
    vectorizer = vectorizer_for(features)
    x = vectorizer.fit_transform(splits["train"]["text"])
    fitted = CLASSIFIERS[classifier]().fit(x, [lab == "spam" for lab in splits["train"]["label"]])
    results = {}
    for split in ("validation", "test"):
        predicted = fitted.predict(vectorizer.transform(splits[split]["text"]))
        truth = [label == "spam" for label in splits[split]["label"]]
        results[split] = binary_metrics(truth, [bool(p) for p in predicted])
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/sms_spam"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, *range(1, 10)])
    parser.add_argument("--out", default=str(ROOT / "results" / "sms_spam_svm.json"))
    split_config = OmegaConf.load(DATA_CONFIG)
    parser.add_argument(
        "--group-duplicates",
        action=argparse.BooleanOptionalAction,
        default=bool(split_config.group_duplicates),
        help="keep repeated messages in one split (default: the data config's choice)",
    )
    parser.add_argument("--features", choices=("word", "word+char"), default="word")
    parser.add_argument("--classifier", choices=sorted(CLASSIFIERS), default="svm")
    args = parser.parse_args(argv)

    per_seed = {}
    print(f"{'seed':>5} {'split':>10} {'acc':>7} {'P':>6} {'R':>6} {'F1':>6} errors")
    for seed in args.seeds:
        per_seed[seed] = svm_on_split(
            args.data,
            seed,
            split_config.val_fraction,
            split_config.test_fraction,
            args.group_duplicates,
            args.features,
            args.classifier,
        )
        for split, m in per_seed[seed].items():
            print(
                f"{seed:>5} {split:>10} {m['acc']:7.2%} {m['precision']:6.3f} "
                f"{m['recall']:6.3f} {m['f1']:6.3f} {m['errors']}/{m['messages']}"
            )
    mean_test = {k: statistics.mean(r["test"][k] for r in per_seed.values()) for k in METRICS}
    print(
        f" mean {'test':>10} {mean_test['acc']:7.2%} {mean_test['precision']:6.3f} "
        f"{mean_test['recall']:6.3f} {mean_test['f1']:6.3f}"
    )
    report = {
        "command": " ".join(["python benchmarks/spam_svm.py", *(argv or sys.argv[1:])]),
        "model": f"{DESCRIPTIONS[args.features]} + {DESCRIPTIONS[args.classifier]}, fitted on "
        "train",
        "data": str(args.data),
        "split": {
            "val_fraction": split_config.val_fraction,
            "test_fraction": split_config.test_fraction,
            "group_duplicates": args.group_duplicates,
        },
        "scikit_learn": sklearn.__version__,
        "python": platform.python_version(),
        "git_revision": git_revision(),
        "per_seed": {str(seed): r for seed, r in per_seed.items()},
        "mean_test": mean_test,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
