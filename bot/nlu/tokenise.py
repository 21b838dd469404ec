"""jieba word segmentation with the bank's user dictionary."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import jieba

jieba.setLogLevel(logging.WARNING)

_PUNCTUATION = set(" \t\n,.!?;:'\"()[]{}<>~`@#$%^&*-_=+|\\/，。！？；：、“”‘’（）【】《》…·")


class Tokenizer:
    """jieba's default instance with the bank dictionary and extra words added.

    The default instance is shared on purpose: spaCy's Chinese tokenizer loads it anyway, and each jieba
    instance holds ~70 MB of dictionary. Words only ever get added, so sharing cannot break another pipeline.
    """

    def __init__(self, user_dict: Path | None = None, extra_words: Iterable[str] = ()) -> None:
        self.jieba = jieba.dt
        self.jieba.initialize()
        if user_dict is not None:
            if not user_dict.exists():
                raise FileNotFoundError(f"jieba user dictionary not found: {user_dict}")
            self.jieba.load_userdict(str(user_dict))
        for word in extra_words:
            if word.strip():
                self.jieba.add_word(word.strip(), freq=20000)

    def tokenize(self, text: str) -> list[str]:
        """Words of `text` (normalised text expected), without whitespace and punctuation tokens."""
        return [w for w in self.jieba.cut(text, HMM=True) if w.strip() and w not in _PUNCTUATION]
