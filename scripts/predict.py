"""Use a checkpoint on a text or on a whole file.

    python scripts/predict.py ckpt_path=... text="thanks for all the"    # lm: next words
    python scripts/predict.py ckpt_path=... text="thanks for all the" word=fish   # P(fish | ...)
    python scripts/predict.py ckpt_path=... text="I like tea" [score=true]   # tags; lm: log-prob
    python scripts/predict.py ckpt_path=... input=FILE [output=FILE]     # batched, streamed

A text is taken literally (`${...}` too), or read from `text_file=PATH` (`-`: stdin). A file
is one text per line, CoNLL-U (tagging: written back with UPOS filled) or `label<TAB>text`
(classification); JSON Lines out (rnn_tasks/predict_files.py). A user's mistake ends in one
`error:` line and exit code 2 (rnn_tasks/cli.py).
"""

import hydra
from omegaconf import DictConfig, OmegaConf


@hydra.main(version_base="1.3", config_path="../configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    import json

    from rnn_tasks.cli import user_errors
    from rnn_tasks.config_checks import validate_tool_config
    from rnn_tasks.runtime import set_up_process, text_input

    with user_errors(cfg):
        validate_tool_config(cfg)
        text = None if cfg.input is not None else text_input(cfg, "text", "text_file")
        from rnn_tasks.nn import reduce_precision
        from rnn_tasks.tasks import load_task  # Lightning: seconds, after the checks above

        set_up_process(cfg.threads)
        task = reduce_precision(load_task(cfg.ckpt_path), cfg.precision, inplace=True)
        predictor = task.predictor
        predictor.batch_size = cfg.batch_size
        if cfg.input is not None:
            from rnn_tasks.predict_files import predict_file

            predict_file(predictor, task.task_name, cfg.input, cfg.output, cfg.format,
                         cfg.probs, cfg.progress)  # fmt: skip
            return
        print(json.dumps(predict_text(task, text, cfg), ensure_ascii=False))  # one line, as jq


def predict_text(task, text: str, cfg: DictConfig):
    if task.task_name == "lm":
        if cfg.word is not None:
            words = [str(w) for w in cfg.word] if OmegaConf.is_list(cfg.word) else [str(cfg.word)]
            return task.prob(words, text)
        if cfg.score:
            return task.score(text)
        return [{"word": w, "p": round(p, 6)} for w, p in task.next_words(text, cfg.k)]
    if task.task_name == "pos":
        if cfg.probs:
            return [{"word": w, "tag": t, "probs": p} for w, t, p in task.predict(text, probs=True)]
        return [{"word": w, "tag": t} for w, t in task.predict(text)]
    label, p = task.predict(text)
    return {"label": label, "p": round(p, 6), "all": task.predict_proba(text)}


if __name__ == "__main__":
    main()
