"""Use a checkpoint on one text: POS tags per word, the class and its probability, or the
LM's top-k next words. `python scripts/predict.py ckpt_path=... text="thanks for all the"`
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    import json

    from rnn_tasks.runtime import set_up_process, text_setting
    from rnn_tasks.tasks import load_task

    set_up_process(cfg.threads)
    task = load_task(cfg.ckpt_path)
    text = text_setting(cfg, "text")
    if task.task_name == "lm":
        result = [{"word": w, "p": round(p, 6)} for w, p in task.next_words(text, cfg.k)]
    elif task.task_name == "pos":
        result = [{"word": w, "tag": t} for w, t in task.predict(text)]
    else:
        label, p = task.predict(text)
        result = {"label": label, "p": round(p, 6), "all": task.predict_proba(text)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
