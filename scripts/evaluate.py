"""Print a checkpoint's metrics on a split, or on any local file, as JSON.

`python scripts/evaluate.py ckpt_path=... [split=validation] [data.test_file=PATH] [data.path=DIR]`;
`ckpt_path=[a.ckpt,b.ckpt]` evaluates an ensemble: the average of their probabilities.
A user's mistake ends in one `error:` line and exit code 2 (rnn_tasks/cli.py).
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../configs", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    import json

    from rnn_tasks.cli import user_errors
    from rnn_tasks.config_checks import validate_tool_config

    with user_errors(cfg):
        validate_tool_config(cfg)
        from rnn_tasks.evaluate import evaluate  # Lightning: seconds, after the check above

        print(json.dumps(evaluate(cfg), indent=2))


if __name__ == "__main__":
    main()
