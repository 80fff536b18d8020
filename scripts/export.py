"""Export a checkpoint's model for use without Lightning: `python scripts/export.py
ckpt_path=... out=DIR` writes DIR/model.safetensors (weights) and DIR/config.json (what
rebuilds the model and its text pipeline), read by `rnn_tasks.load_model(DIR)`;
`program=true` adds DIR/model.pt2 (torch.export). Prints the checkpoint's and the export's
sizes. A user's mistake ends in one `error:` line and exit code 2 (rnn_tasks/cli.py).
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../configs", config_name="export")
def main(cfg: DictConfig) -> None:
    from rnn_tasks.cli import user_errors
    from rnn_tasks.config_checks import validate_tool_config
    from rnn_tasks.runtime import set_up_process

    with user_errors(cfg):
        validate_tool_config(cfg)
        if not isinstance(cfg.program, bool):
            raise ValueError(f"program must be true or false, got {cfg.program!r}")
        from rnn_tasks.export import save_export, save_program, size_report
        from rnn_tasks.tasks import load_task  # Lightning: seconds, after the checks above

        set_up_process(cfg.threads)
        task = load_task(cfg.ckpt_path)
        paths = save_export(task, cfg.out)
        if cfg.program:
            paths |= save_program(task.model, cfg.out)
        print(size_report(cfg.ckpt_path, paths))


if __name__ == "__main__":
    main()
