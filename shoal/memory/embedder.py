"""Text embedders for learnings: a local hashed one that needs nothing, or a model's.

Every embedder returns unit vectors of exactly :data:`DIM` floats, so that the
``learnings.embedding`` column (``FLOAT[256]``) holds either kind. Vectors of two
embedders live in different spaces and are never compared: each row records its
embedder's :attr:`~Embedder.name`, and the store filters on it.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

from shoal.store.learnings import DIM

if TYPE_CHECKING:
    from shoal.llm.client import Embeddings, ModelConfig

# Words of a learning that say nothing about its subject. Without them two
# unrelated sentences share "the", "to", "is", … and look slightly alike.
_STOPWORD_TEXT = """a an and are as at be been but by can could did do does for from had has have
    how i if in into is it its may might must no not of on or our should so than that
    the their then there these they this those to was we were when where which while
    who will with would you your"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_WORD = re.compile(r"\w+")
# Relative weights of the feature groups. Character n-grams (about 3 per letter)
# would otherwise drown the words; they are there to match "test" with "tests" and
# "timeout" with "timeouts", not to decide the subject.
_WORD_WEIGHT = 1.0
_BIGRAM_WEIGHT = 0.7
_CHAR_WEIGHT = 0.35
_CHAR_SIZES = (3, 4, 5)


class Embedder(Protocol):
    """Anything that turns texts into unit vectors of :data:`DIM` floats."""

    name: str
    """Identifies the vector space (embedder and version); stored with every vector."""

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector of :data:`DIM` floats per text, in order."""
        ...


@lru_cache(maxsize=1 << 17)
def _slot(feature: str) -> tuple[int, float]:
    """The bucket and sign of one feature: a stable hash, the same in every process.

    Python's ``hash`` is salted per process, so it cannot be used for vectors
    that are stored and compared later.
    """
    value = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "big")
    return value % DIM, (1.0 if value >> 63 else -1.0)


@lru_cache(maxsize=1 << 15)
def _word_features(word: str) -> tuple[str, ...]:
    """The unigram and character n-gram features of one word (cached: words recur a lot)."""
    # Boundary marks make "<te" (a word starting with "te") differ from "te" inside one.
    marked = f"<{word}>"
    grams = (marked[i : i + n] for n in _CHAR_SIZES for i in range(len(marked) - n + 1))
    return ("w:" + word, *("c:" + gram for gram in grams))


_WEIGHTS = {"w": _WORD_WEIGHT, "b": _BIGRAM_WEIGHT, "c": _CHAR_WEIGHT}


def _features(text: str) -> dict[str, float]:
    """Weighted features of ``text``: sublinear term frequency times the group's weight."""
    words = [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]
    counts: Counter[str] = Counter()
    for word in words:
        counts.update(_word_features(word))
    counts.update(f"b:{first} {second}" for first, second in itertools.pairwise(words))
    return {f: _WEIGHTS[f[0]] * (1.0 + math.log(tf)) for f, tf in counts.items()}


def normalised(vector: Sequence[float]) -> list[float]:
    """``vector`` scaled to length 1; a ValueError for a zero vector (it has no direction)."""
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if norm == 0.0 or not math.isfinite(norm):
        raise ValueError("cannot normalise a zero or non-finite vector")
    return [x / norm for x in vector]


class LocalEmbedder:
    """Hashed bag of words, word bigrams and character 3-5-grams; offline and deterministic.

    Signed feature hashing into :data:`DIM` buckets (blake2b), ``1 + log(tf)`` term
    weights, L2-normalised. It captures shared vocabulary, not meaning: good enough
    to recall "pytest fixture leaks temp dirs" for "tests leave temp directories
    behind", not for paraphrases with no word in common. A text with no words gets
    the zero vector, which the store refuses to keep and never matches.
    """

    name = f"local-hash-v1-{DIM}"

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_one(text) for text in texts]

    def embed_one(self, text: str) -> list[float]:
        vector = [0.0] * DIM
        for feature, weight in _features(text).items():
            index, sign = _slot(feature)
            vector[index] += sign * weight
        norm = math.sqrt(math.fsum(x * x for x in vector))
        return [x / norm for x in vector] if norm else vector


class ModelEmbedder:
    """Vectors from an embedding model through :func:`shoal.llm.client.embed`.

    ``client.embed`` takes no ``dimensions`` argument, so the model answers at
    its native size and the vector is cut to its first :data:`DIM` values and
    renormalised. That keeps most of the meaning for Matryoshka-trained models
    (OpenAI's text-embedding-3, nomic-embed, …) and less for others; a model
    with fewer than DIM dimensions is zero-padded, which leaves cosine
    similarities unchanged. Failures of the call (ModelError) propagate: a
    learning embedded silently with another embedder would never be found.
    """

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.name = f"model:{config.model}:{DIM}"
        self.last: Embeddings | None = None
        """The last call's result (usage and cost), for the caller's accounting."""

    def embed(self, texts: list[str]) -> list[list[float]]:
        from shoal.llm.client import embed

        if not texts:
            return []
        result = embed(self.config, texts)
        self.last = result
        if len(result.vectors) != len(texts):
            raise ValueError(
                f"{self.config.model} returned {len(result.vectors)} vectors for {len(texts)} texts"
            )
        return [self._fit(vector) for vector in result.vectors]

    def _fit(self, vector: Sequence[float]) -> list[float]:
        cut = list(vector[:DIM]) + [0.0] * max(0, DIM - len(vector))
        try:
            return normalised(cut)
        except ValueError:
            raise ValueError(
                f"{self.config.model} returned a vector with nothing in its first {DIM} values"
            ) from None


def embedder_from_env(env: Mapping[str, str] | None = None) -> Embedder:
    """The model embedder if ``SHOAL_EMBEDDING_MODEL`` is set, else :class:`LocalEmbedder`.

    Base URL: ``SHOAL_EMBEDDING_BASE_URL``, else ``SHOAL_BASE_URL``; key:
    ``SHOAL_EMBEDDING_API_KEY``, else ``SHOAL_API_KEY``, else the provider's own
    variable (litellm looks it up).
    """
    env = os.environ if env is None else env
    model = env.get("SHOAL_EMBEDDING_MODEL")
    if not model:
        return LocalEmbedder()
    from shoal.llm.client import ModelConfig

    key = env.get("SHOAL_EMBEDDING_API_KEY") or env.get("SHOAL_API_KEY")
    config = ModelConfig(
        model=model,
        base_url=env.get("SHOAL_EMBEDDING_BASE_URL") or env.get("SHOAL_BASE_URL") or None,
        api_key=key or None,
    )
    return ModelEmbedder(config)
