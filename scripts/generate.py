"""Generate text with a language-model checkpoint, from a sentence start or a prompt.

`python scripts/generate.py ckpt_path=... prompt="the company" temperature=0.8 top_k=50 seed=1`;
the prompt is taken literally (`${...}` too), or read from a file: `prompt_file=PATH`
(`-`: stdin). Words are printed as they are drawn, one sample a line. A user's mistake ends
in one `error:` line and exit code 2 (rnn_tasks/cli.py).
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../configs", config_name="generate")
def main(cfg: DictConfig) -> None:
    from rnn_tasks.cli import user_errors
    from rnn_tasks.config_checks import validate_tool_config
    from rnn_tasks.runtime import set_up_process, text_input

    with user_errors(cfg):
        validate_tool_config(cfg)
        prompt = text_input(cfg, "prompt", "prompt_file")
        from rnn_tasks.nn import reduce_precision
        from rnn_tasks.tasks import load_task  # Lightning: seconds, after the checks above

        set_up_process(cfg.threads)
        task = reduce_precision(load_task(cfg.ckpt_path), cfg.precision, inplace=True)
        if task.task_name != "lm":
            raise ValueError(
                f"{cfg.ckpt_path} is a {task.task_name!r} checkpoint; generation "
                "needs a language model (task=lm)"
            )
        for i in range(cfg.num_samples):
            seed = None if cfg.seed is None else cfg.seed + i
            words = stream_words(task, prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_k, seed)
            for n, word in enumerate(words):
                print(word if n == 0 else f" {word}", end="", flush=True)
            print(flush=True)


def stream_words(task, prompt: str, max_new_tokens: int, temperature, top_k, seed):
    """`LanguageModelTask.generate`'s words one at a time, as they are drawn."""
    import torch

    from rnn_tasks.generation import iter_generate

    generator = None if seed is None else torch.Generator(task.device).manual_seed(seed)
    task.eval()
    ids = task._encode(prompt)  # noqa: SLF001  (the task's own text pipeline)
    new = iter_generate(task.model, ids, max_new_tokens, task.boundary_id, temperature, top_k,
                        generator)  # fmt: skip
    return (task.vocab.itos[i] for i in new)


if __name__ == "__main__":
    main()
