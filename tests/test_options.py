"""The training options of the experiments: dropout placement, tied embeddings, the
character encoder and pretrained word vectors. Each test can fail."""

import gzip

import pytest
import torch

from rnn_tasks.models import CharEncoder, Classifier, Encoder, LanguageModel, Tagger
from rnn_tasks.tasks import LanguageModelTask, TaggingTask
from rnn_tasks.tasks.pretrained import lm_checkpoint_vectors, pretrained_vectors
from rnn_tasks.text import Vocab
from rnn_tasks.text.embeddings import read_vectors, read_words

V, E, H = 50, 8, 12


def test_embedding_dropout_acts_on_the_embeddings_in_training_only():
    torch.manual_seed(0)
    enc = Encoder(V, E, H, cell="gru", embedding_dropout=1.0)  # p=1 zeroes every input
    tokens = torch.randint(0, V, (3, 5))
    out, _ = enc(tokens)
    zeros, _ = enc.rnn(torch.zeros(3, 5, E))
    torch.testing.assert_close(out, zeros)
    enc.eval()
    plain, _ = enc.rnn(enc.embedding(tokens))
    torch.testing.assert_close(enc(tokens)[0], plain)


def embedding_inputs(encoder, tokens, lengths):
    seen = []
    encoder.embedding.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    encoder(tokens, lengths)
    return seen[-1]


def test_word_dropout_replaces_real_words_by_unk_in_training_only():
    torch.manual_seed(0)
    PAD, UNK, p = 0, 1, 0.3
    enc = Encoder(50, 8, 8, cell="gru", padding_idx=PAD, word_dropout=p, unk_idx=UNK)
    tokens = torch.randint(2, 50, (64, 40))
    lengths = torch.randint(1, 41, (64,))
    tokens[torch.arange(40) >= lengths[:, None]] = PAD
    real = tokens != PAD

    seen = embedding_inputs(enc.train(), tokens, lengths)
    changed = seen != tokens
    assert (seen[changed] == UNK).all()  # replaced words read as <unk> ...
    assert not changed[~real].any()  # ... and padding stays padding
    share = changed[real].float().mean().item()
    n = int(real.sum())
    assert abs(share - p) < 4 * (p * (1 - p) / n) ** 0.5  # binomial, 4 standard deviations

    assert torch.equal(embedding_inputs(enc.eval(), tokens, lengths), tokens)


def test_word_dropout_needs_an_unk_id():
    with pytest.raises(ValueError, match="unk_idx"):
        Encoder(50, 8, 8, word_dropout=0.1)
    with pytest.raises(ValueError, match="word_dropout"):
        Encoder(50, 8, 8, word_dropout=1.0, unk_idx=1)


def test_output_dropout_acts_before_the_output_layer():
    torch.manual_seed(0)
    tokens = torch.randint(0, V, (2, 4))
    lm = LanguageModel(V, E, H, output_dropout=1.0)
    logits, _ = lm(tokens)
    torch.testing.assert_close(logits, lm.V.bias.expand_as(logits))  # nothing but the bias
    tagger = Tagger(V, 5, output_dropout=1.0, embedding_dim=E, hidden_size=H)
    torch.testing.assert_close(tagger(tokens), tagger.V.bias.expand(2, 4, 5))
    clf = Classifier(V, 2, output_dropout=1.0, embedding_dim=E, hidden_size=H)
    torch.testing.assert_close(clf(tokens), clf.head[-1].bias.expand(2, 2))
    for model in (lm, tagger, clf):
        model.eval()
        out = model(tokens)[0] if model is lm else model(tokens)
        assert out.std() > 0


def test_tied_weights_share_one_tensor_and_its_gradient():
    torch.manual_seed(0)
    lm = LanguageModel(V, E, E, tie_weights=True)
    names = [n for n, _ in lm.named_parameters()]
    assert "V.weight" not in names  # one parameter, counted once
    tokens = torch.randint(0, V, (2, 4))
    logits, _ = lm(tokens)
    logits.sum().backward()
    grad = lm.encoder.embedding.weight.grad
    unused = sorted(set(range(V)) - set(tokens.flatten().tolist()))
    assert grad[unused].abs().sum() > 0  # words never read still learn through the output layer


def test_char_encoder_sees_only_each_words_own_characters():
    torch.manual_seed(0)
    enc = CharEncoder(20, 6, 7, cell="lstm").eval()
    chars = torch.randint(1, 20, (2, 3, 5))
    chars[0, 1, 3:] = 0  # a shorter word
    real = torch.tensor([[True, True, True], [True, True, False]])
    out = enc(chars, real)  # (2, 3, 14)
    alone = enc(chars[0:1, 1:2, :3], torch.ones(1, 1, dtype=torch.bool))
    torch.testing.assert_close(out[0, 1], alone[0, 0], atol=1e-6, rtol=1e-6)
    assert torch.all(out[1, 2] == 0)  # padding words get no vector


def test_tagger_with_chars_tells_unknown_words_apart_by_spelling():
    torch.manual_seed(0)
    tagger = Tagger(V, 4, num_chars=20, char_embedding_dim=6, char_hidden_size=7,
                    embedding_dim=E, hidden_size=H, bidirectional=True).eval()  # fmt: skip
    tokens = torch.tensor([[1, 1]])  # the same (unknown) word id twice...
    chars = torch.tensor([[[3, 4, 5], [6, 7, 0]]])  # ...spelled differently
    logits = tagger(tokens, torch.tensor([2]), chars)
    assert not torch.allclose(logits[0, 0], logits[0, 1])
    with pytest.raises(ValueError, match="pass chars"):
        tagger(tokens)


def write_vectors(path, rows, header=False):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as f:
        if header:
            f.write(f"{len(rows)} {len(next(iter(rows.values())))}\n")
        for word, vec in rows.items():
            f.write(word + " " + " ".join(str(v) for v in vec) + "\n")


@pytest.mark.parametrize("name,header", [("glove.txt", False), ("w2v.txt.gz", True)])
def test_read_vectors_matches_words_and_falls_back_to_lowercase(tmp_path, name, header):
    path = tmp_path / name
    write_vectors(path, {"the": [1, 2], "paris": [3, 4], "<pad>": [9, 9]}, header)
    vocab = Vocab(["<pad>", "<unk>", "the", "Paris", "zebra"])
    vectors, found = read_vectors(path, vocab)
    assert found.tolist() == [False, False, True, True, False]  # padding stays zero
    torch.testing.assert_close(vectors[3], torch.tensor([3.0, 4.0]))


def test_read_vectors_reports_the_bad_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("the 1 2\ncat 3\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected a word and 2 numbers"):
        read_vectors(path, Vocab(["<pad>", "<unk>", "the"]))
    path.write_text("the 1 2\ncat\t3\t4\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: fields separated by tabs"):
        read_vectors(path, Vocab(["<pad>", "<unk>", "the"]))


def test_read_vectors_skips_a_bom_blank_lines_and_the_specials(tmp_path):
    path = tmp_path / "v.txt"
    path.write_bytes("the 1 2\n<unk> 5 5\n\ncat 3 4\n\n".encode("utf-8-sig"))
    vectors, found = read_vectors(path, Vocab(["<pad>", "<unk>", "the", "cat"]))
    assert found.tolist() == [False, False, True, True]  # <unk> stands for no word
    torch.testing.assert_close(vectors[2], torch.tensor([1.0, 2.0]))


def test_a_missing_vectors_file_is_named_and_the_glove_one_says_what_writes_it(tmp_path):
    vocab = Vocab(["<pad>", "<unk>", "the"])
    with pytest.raises(FileNotFoundError, match=r"not found: .*vectors.txt$"):
        read_vectors(tmp_path / "vectors.txt", vocab)
    with pytest.raises(FileNotFoundError, match=r"glove.6B.50d.txt \(python scripts/glove_from"):
        read_vectors(tmp_path / "glove.6B.50d.txt", vocab)


def test_tagger_takes_embeddings_from_a_file_and_from_an_lm_checkpoint(tmp_path):
    torch.manual_seed(0)
    vocab = Vocab(["<pad>", "<unk>", "the", "cat"])
    write_vectors(tmp_path / "v.txt", {"the": [1.0] * E, "cat": [2.0] * E})
    model = dict(embedding_dim=E, hidden_size=H, bidirectional=True)
    task = TaggingTask(
        vocab.to_dict(), ["A", "B"], model, embeddings={"path": str(tmp_path / "v.txt")}
    )
    task.setup("fit")
    torch.testing.assert_close(task.model.encoder.embedding.weight[3], torch.full((E,), 2.0))

    lm_vocab = Vocab(["<unk>", "<eos>", "cat", "dog"], pad=None)
    lm = LanguageModelTask(lm_vocab.to_dict(), dict(embedding_dim=E, hidden_size=H))
    ckpt = tmp_path / "lm.ckpt"
    torch.save({"rnn_tasks": {"task": "lm"}, "hyper_parameters": dict(lm.hparams),
                "state_dict": lm.state_dict()}, ckpt)  # fmt: skip
    vectors, found = lm_checkpoint_vectors(ckpt, vocab)
    assert found.tolist() == [False, False, False, True]
    torch.testing.assert_close(vectors[3], lm.model.encoder.embedding.weight[2])

    wrong = TaggingTask(vocab.to_dict(), ["A", "B"], {**model, "embedding_dim": 3},
                        embeddings={"path": str(tmp_path / "v.txt")})  # fmt: skip
    with pytest.raises(ValueError, match=f"set model.embedding_dim={E}"):
        wrong.setup("fit")
    write_vectors(tmp_path / "other.txt", {"zebra": [1.0] * E})
    unrelated = TaggingTask(vocab.to_dict(), ["A", "B"], model,
                            embeddings={"path": str(tmp_path / "other.txt")})  # fmt: skip
    with pytest.raises(ValueError, match=r"other.txt has a vector for none of the 4 words"):
        unrelated.setup("fit")
    with pytest.raises(FileNotFoundError, match=r"embeddings checkpoint not found: .*gone.ckpt"):
        pretrained_vectors(tmp_path / "gone.ckpt", vocab)


def test_read_words_takes_the_first_words_in_file_order(tmp_path):
    rows = {"the": [1.0, 2.0], "of": [0.0, 1.0], "zebra": [3.0, 3.0]}
    write_vectors(tmp_path / "v.txt.gz", rows, header=True)  # word2vec header, gzipped
    assert read_words(tmp_path / "v.txt.gz", 2) == ["the", "of"]
    assert read_words(tmp_path / "v.txt.gz", 10) == ["the", "of", "zebra"]
    (tmp_path / "tabs.txt").write_text("the 1.0 2.0\nof\t0.0 1.0\n")
    with pytest.raises(ValueError, match=r"tabs.txt:2: fields separated by tabs"):
        read_words(tmp_path / "tabs.txt", 5)
    with pytest.raises(FileNotFoundError, match=r"glove.6B.50d.txt \(python scripts/glove_from"):
        read_words(tmp_path / "glove.6B.50d.txt", 5)


def added_words_task(tmp_path, vectors: dict, **task):
    """A tagger over "the cat" from training and "zebra", "gnu" added from a vectors file."""
    vocab = Vocab(["<pad>", "<unk>", "the", "cat"]).extended(["zebra", "gnu"])
    write_vectors(tmp_path / "v.txt", vectors)
    embeddings = {"path": str(tmp_path / "v.txt"), **task.pop("embeddings", {})}
    model = dict(embedding_dim=E, hidden_size=H, bidirectional=True)
    return TaggingTask(vocab.to_dict(), ["A", "B"], model, embeddings=embeddings, **task)


def test_added_words_read_as_their_vectors_and_never_train(tmp_path):
    torch.manual_seed(0)
    rows = {"the": [1.0] * E, "zebra": [2.0] * E, "gnu": [3.0] * E}
    task = added_words_task(tmp_path, rows, optimizer="adamw", lr=0.1, weight_decay=0.5)
    encoder = task.model.encoder
    assert encoder.embedding.weight.shape == (4, E)  # trained: the training words only
    plain = Tagger(4, 2, **task.hparams.model)  # the same tagger without added words
    assert task.num_parameters == sum(p.numel() for p in plain.parameters())
    task.setup("fit")
    added = torch.tensor([[2.0] * E, [3.0] * E])
    torch.testing.assert_close(encoder.fixed_embedding, added)
    tokens, lengths = torch.tensor([[2, 3, 4, 5]]), torch.tensor([4])
    x = encoder.embedding(torch.tensor([2, 3]))
    torch.testing.assert_close(encoder._embed(tokens)[0], torch.cat((x, added)))
    opt = task.configure_optimizers()["optimizer"]
    for _ in range(3):  # "zebra" in the batch too: nothing trains or decays it
        opt.zero_grad()
        task.model(tokens, lengths).logsumexp(-1).sum().backward()
        opt.step()
    torch.testing.assert_close(encoder.fixed_embedding, added, rtol=0, atol=0)
    assert not torch.equal(encoder.embedding.weight[2], torch.ones(E))  # "the" fine-tunes
    again = added_words_task(tmp_path, rows)  # a checkpoint holds the vectors: no file needed
    again.load_state_dict(task.state_dict())
    torch.testing.assert_close(again.model.encoder.fixed_embedding, added)


def test_added_words_need_their_vectors(tmp_path):
    task = added_words_task(tmp_path, {"the": [1.0] * E}, embeddings={"path": None})
    with pytest.raises(ValueError, match="last 2 words come from data.pretrained_words"):
        task.setup("fit")
    task = added_words_task(tmp_path, {"the": [1.0] * E, "zebra": [1.0] * E})
    with pytest.raises(ValueError, match=r"1 of the 2 words added .* no vector in .*v.txt"):
        task.setup("fit")


def test_added_words_count_as_unseen_in_the_tagging_breakdown(tmp_path):
    torch.manual_seed(0)
    task = added_words_task(tmp_path, {"the": [1.0] * E, "zebra": [2.0] * E, "gnu": [3.0] * E})
    task.log = lambda *args, **kwargs: None  # no trainer
    tokens = torch.tensor([[2, 4, 1]])  # the (seen), zebra (added), <unk>
    batch = {"tokens": tokens, "lengths": torch.tensor([3]), "tags": torch.zeros_like(tokens)}
    task._step(batch, "val")
    words = {part: task.metrics[f"val_acc_{part}"] for part in ("seen", "unseen")}
    assert {part: int(m.tp + m.fn) for part, m in words.items()} == {"seen": 1, "unseen": 2}


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_frozen_pretrained_rows_stay_put_under_weight_decay(tmp_path, optimizer):
    torch.manual_seed(0)
    vocab = Vocab(["<pad>", "<unk>", "the", "cat"])
    write_vectors(tmp_path / "v.txt", {"the": [1.0] * E})
    task = TaggingTask(vocab.to_dict(), ["A", "B"], dict(embedding_dim=E, hidden_size=H),
                       embeddings={"path": str(tmp_path / "v.txt"), "freeze": True},
                       optimizer=optimizer, lr=0.1, weight_decay=0.5, momentum=0.9)  # fmt: skip
    task.setup("fit")
    table = task.model.encoder.embedding.weight
    before = table.detach().clone()
    opt = task.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    tokens, lengths = torch.tensor([[2, 3, 1]]), torch.tensor([3])
    for _ in range(3):
        opt.zero_grad()
        task.model(tokens, lengths).logsumexp(-1).sum().backward()
        opt.step()
    torch.testing.assert_close(table[2], before[2], rtol=0, atol=0)  # frozen: "the"
    assert not torch.equal(table[3], before[3])  # not found: "cat" learns
