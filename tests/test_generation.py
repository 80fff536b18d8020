"""Generation over a model's step(): greedy = argmax, seeded sampling reproducible, top-k."""

import pytest
import torch

from rnn_tasks.generation import generate, iter_generate, next_word_probs, sample_next
from rnn_tasks.models import FeedForwardLM, LanguageModel

V = 30


def lm():
    torch.manual_seed(0)
    return LanguageModel(V, 8, 16, cell="gru", num_layers=2).eval()


def test_temperature_zero_is_argmax_rerun_from_scratch():
    model = lm()
    prompt = [1, 4, 7]
    new = generate(model, prompt, 12, eos_id=None, temperature=0)
    ids = list(prompt)
    for expected in new:  # re-run the whole prefix each time: the carried state must agree
        logits, _ = model(torch.tensor([ids]))
        assert int(logits[0, -1].argmax()) == expected
        ids.append(expected)


def test_seeded_sampling_is_reproducible_and_seeds_differ():
    model = lm()
    runs = [
        generate(model, [1], 20, None, 1.0, None, torch.Generator().manual_seed(s))
        for s in (3, 3, 4)
    ]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_stops_at_eos_and_respects_the_limit():
    model = lm()
    greedy = generate(model, [1], 50, eos_id=None, temperature=0)
    eos = greedy[5]
    cut = generate(model, [1], 50, eos_id=eos, temperature=0)
    assert cut == greedy[: greedy.index(eos)]
    assert len(generate(model, [1], 4, eos_id=None)) == 4


def test_top_k_only_draws_from_the_k_best():
    logits = torch.tensor([[0.0, 5.0, 4.0, 3.0, -1.0]])
    g = torch.Generator().manual_seed(0)
    draws = {int(sample_next(logits, 1.0, 2, g)) for _ in range(200)}
    assert draws == {1, 2}


def test_next_word_probs_is_a_distribution_for_ffnn_too():
    for model in (lm(), FeedForwardLM(V, 8, 16, context=3).eval()):
        p = next_word_probs(model, [1, 2, 3])
        assert p.shape == (V,)
        torch.testing.assert_close(p.sum(), torch.tensor(1.0))


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"temperature": "abc"}, "temperature must be a finite number >= 0"),
        ({"temperature": -1.0}, "temperature must be a finite number >= 0"),
        ({"temperature": float("nan")}, "temperature must be a finite number >= 0"),
        ({"temperature": float("inf")}, "temperature must be a finite number >= 0"),
        ({"top_k": 2.5}, "top_k must be a whole number >= 1"),
        ({"top_k": 0}, "top_k must be a whole number >= 1"),
        ({"max_new_tokens": 2.5}, "max_new_tokens must be a whole number"),
    ],
)
def test_bad_sampling_settings_are_named_before_anything_runs(settings, match):
    # max_new_tokens=0 samples nothing: the settings must still be checked.
    args = {"max_new_tokens": 0, "temperature": 1.0, "top_k": None, **settings}
    with pytest.raises(ValueError, match=match):
        generate(lm(), [1], args["max_new_tokens"], None, args["temperature"], args["top_k"])


def test_iter_generate_yields_what_generate_returns_and_checks_at_the_call():
    model = lm()
    seeded = [torch.Generator().manual_seed(5) for _ in range(2)]
    stream = iter_generate(model, [1, 2], 15, None, 1.0, 5, seeded[0])
    first = next(stream)  # one id at a time
    assert [first, *stream] == generate(model, [1, 2], 15, None, 1.0, 5, seeded[1])
    with pytest.raises(ValueError, match="temperature"):  # not at the first next()
        iter_generate(model, [1], 3, None, float("nan"))
