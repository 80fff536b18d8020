"""Train a task: `python scripts/train.py task=lm|pos|cls [data=...] [model=...] [trainer=...]`.

Keeps the best and the last checkpoint, tests the best one and writes metrics.json into the
run folder (outputs/<task>/<time>/). `ckpt_path=.../last.ckpt` resumes; `-m` sweeps;
`ensemble_size=5` trains five seeds and tests the average of their probabilities.
A user's mistake ends in one `error:` line and exit code 2 (rnn_tasks/cli.py).
"""

import shlex

import hydra
from omegaconf import DictConfig, OmegaConf


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    # After Hydra parsed the command line: a fast --help.
    from rnn_tasks.cli import user_errors
    from rnn_tasks.config_checks import validate_train_config

    with user_errors(cfg):
        validate_train_config(cfg)  # before Lightning is imported, the data read, the model built
        from rnn_tasks.train import train
        from rnn_tasks.train_ensemble import train_ensemble

        # As typed: `${...}` in an override is not resolved here. Hydra's own settings the
        # user gave (hydra.run.dir=...) too, so the command reruns the run where it ran.
        typed = HydraConfig.get().overrides
        hydra_args = [o for o in typed.hydra if not o.startswith("hydra.mode=")]
        overrides = [*OmegaConf.to_container(typed.task, resolve=False), *hydra_args]
        run = train_ensemble if cfg.ensemble_size > 1 else train
        command = shlex.join(["python", "scripts/train.py", *overrides])  # pastes into a shell
        metrics = run(cfg, command=command)
        return metrics.get(cfg.monitor)  # the value a Hydra sweeper optimises


if __name__ == "__main__":
    main()
