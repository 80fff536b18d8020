"""Redraw the figures of a run folder, or the learning curves of a Hydra sweep, from files.

`python scripts/plot.py outputs/pos/<time>/` -> learning_curves.png (and, for pos and cls,
confusion_matrix.png; for pos, tag_accuracy.png) in that folder, from metrics.csv,
metrics.json and confusion.json (no checkpoint needed);
`python scripts/plot.py multirun/<time>/` -> sweep_curves.png, the runs overlaid.
Prints the paths written. A user's mistake ends in one `error:` line and exit code 2.
"""

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="run folders or multirun folders")
    args = parser.parse_args()

    from rnn_tasks.cli import user_errors
    from rnn_tasks.plots import write_figures_of

    with user_errors():
        for folder in args.folders:
            for path in write_figures_of(folder):
                print(path)


if __name__ == "__main__":
    main()
