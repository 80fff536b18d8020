"""Generate text with a language-model checkpoint, from a sentence start or a prompt.

`python scripts/generate.py ckpt_path=... prompt="the company" temperature=0.8 top_k=50 seed=1`
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../configs", config_name="generate")
def main(cfg: DictConfig) -> None:
    from rnn_tasks.runtime import set_up_process, text_setting
    from rnn_tasks.tasks import load_task

    set_up_process(cfg.threads)
    task = load_task(cfg.ckpt_path)
    if task.task_name != "lm":
        raise SystemExit(
            f"{cfg.ckpt_path} is a {task.task_name!r} checkpoint; generation "
            "needs a language model (task=lm)"
        )
    prompt = text_setting(cfg, "prompt")
    for i in range(cfg.num_samples):
        seed = None if cfg.seed is None else cfg.seed + i
        print(task.generate(prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_k, seed))


if __name__ == "__main__":
    main()
