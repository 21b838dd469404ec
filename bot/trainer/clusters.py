"""Near-identical customer messages grouped by their sentence-encoder vectors: greedy leader clustering.

Texts come most important first; each joins the cluster whose leader (its first, most important text) is the
most similar to it, when that cosine is at least `threshold`, else it leads a new cluster. On the bundled
bot's encoder (USE-m3) 0.85 puts "我的信用卡额度怎么提" with "信用卡额度怎样提高" (0.90) and keeps
"信用卡账单" apart from "信用卡额度" (0.80). Without an encoder
(`retrieval.encoder: none`) every distinct text is a cluster of its own.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Encode = Callable[[list[str]], np.ndarray]  # L2-normalised rows, as bot.retrieval.encoders.Encoder gives
DEFAULT_THRESHOLD = 0.85
BATCH = 256


def cluster(texts: list[str], encode: Encode | None, threshold: float = DEFAULT_THRESHOLD) -> list[list[int]]:
    """Clusters as lists of indexes into `texts`, each in input order (its leader first), clusters in the
    order of their leaders."""
    if encode is None or len(texts) < 2:
        return [[i] for i in range(len(texts))]
    vectors = _encode(texts, encode)
    leaders: list[int] = []
    members: list[list[int]] = []
    for index, vector in enumerate(vectors):
        if leaders:
            scores = vectors[leaders] @ vector
            best = int(np.argmax(scores))
            if scores[best] >= threshold:
                members[best].append(index)
                continue
        leaders.append(index)
        members.append([index])
    return members


def _encode(texts: list[str], encode: Encode) -> np.ndarray:
    parts = [np.asarray(encode(texts[i:i + BATCH]), dtype=np.float32) for i in range(0, len(texts), BATCH)]
    return np.vstack(parts)
