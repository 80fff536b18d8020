"""What the tagging and classification DataModules share: words looked up in a word
vocabulary by a normalised key, and spelled, as written, in a character vocabulary."""

from __future__ import annotations

from ..text import Vocab, lookup_keys
from ..text.embeddings import read_words
from ..text.pipeline import TextPipeline, Tokenizer
from .base import TextDataModule


class WordsDataModule(TextDataModule):
    """A `TextDataModule` whose examples are lists of words, each given to the model twice:
    its lookup key (``lowercase``, ``zero_digits``: `lookup_keys`) as a word id, and its
    characters as written (capitals and digits are cues) for a character encoder.

    ``pretrained_words`` (a GloVe / word2vec text file) appends the keys of its first
    ``pretrained_words_limit`` words the training words lack to the word vocabulary
    (`Vocab.extended`; Lample et al. 2016): a word unseen in training then reads as its
    pretrained vector (``task.embeddings.path``, the same file) instead of ``<unk>``; without
    ``lowercase``, a word also finds its lowercase among them (`word_ids`). A file word
    that is not its own key (with ``zero_digits``, "1990s") is left out; ``max_vocab_size``
    caps the training words only.

    Subclasses build both vocabularies with `_fit_words` and take them from a checkpoint
    with `_adopt_words`; metadata carries them as ``vocab`` and ``chars``. Either makes
    ``pipeline`` (`TextPipeline`), which encodes every example (in `Dataset.map`), and
    which the task rebuilds from the same metadata to read raw text at prediction.
    """

    tokenizer: Tokenizer  # how a raw text of this data becomes words

    def __init__(
        self,
        *,
        lowercase: bool,
        zero_digits: bool,
        pretrained_words: str | None,
        pretrained_words_limit: int,
        **base,
    ) -> None:
        """``base``: `TextDataModule`'s arguments (batch sizes, workers, vocabulary, seed)."""
        super().__init__(**base)
        limit = pretrained_words_limit
        if pretrained_words is not None and (type(limit) is not int or limit < 1):
            raise ValueError(f"pretrained_words_limit must be a whole number >= 1, got {limit!r}")
        self.lowercase = lowercase
        self.zero_digits = zero_digits
        self.pretrained_words = pretrained_words
        self.pretrained_words_limit = pretrained_words_limit
        self.chars: Vocab | None = None

    def _keys(self, words: list[str]) -> list[str]:
        return lookup_keys(words, self.lowercase, self.zero_digits)

    def _fit_words(self, train: list[list[str]]) -> None:
        """The word vocabulary (by key) and the character vocabulary of the training words."""
        self.vocab = Vocab.build(
            (self._keys(words) for words in train),
            min_freq=self.min_freq,
            max_size=self.max_vocab_size,
        )
        if self.pretrained_words is not None:
            words = read_words(self.pretrained_words, self.pretrained_words_limit)
            # only a word that is its own key: the vectors file has a line for that key
            self.vocab = self.vocab.extended(w for w in words if self._keys([w]) == [w])
        self.chars = Vocab.build(list(w) for words in train for w in words)
        self._make_pipeline()

    def _adopt_words(self, metadata: dict, specials: tuple[str, ...] = ("pad",)) -> None:
        """Takes both vocabularies from a checkpoint's metadata; the word vocabulary must
        have the `specials` ("pad", "unk") the task's batches rely on."""
        vocab = Vocab.from_dict(metadata["vocab"])
        ids = {"pad": vocab.pad_id, "unk": vocab.unk_id}
        missing = [name for name in specials if ids[name] is None]
        if missing:
            raise ValueError(
                f"the adopted vocabulary has no {' or '.join(missing)} token; "
                f"{type(self).__name__} batches need it"
            )
        self.vocab = vocab
        self.chars = Vocab.from_dict(metadata["chars"])
        self._make_pipeline()

    def _make_pipeline(self) -> None:
        self.pipeline = TextPipeline(
            self.tokenizer, self.vocab, self.chars, self.lowercase, self.zero_digits
        )

    def _words_metadata(self) -> dict:
        return {"vocab": self.vocab.to_dict(), "chars": self.chars.to_dict()}
