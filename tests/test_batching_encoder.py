"""BatchingEncoder: concurrent callers share one encode call and each gets exactly its own vectors."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bot.retrieval.encoders import BatchingEncoder, USEM3Encoder


class CountingEncoder:
    """An encoder whose vector for a text is its length and its first character's code, slow like a real one."""

    name, dimension = "counting", 2

    def __init__(self, seconds: float = 0.05) -> None:
        self.calls: list[int] = []
        self.seconds = seconds
        self.lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        with self.lock:
            self.calls.append(len(texts))
        time.sleep(self.seconds)
        if any(t == "boom" for t in texts):
            raise RuntimeError("encoder failed")
        return np.array([[len(t), ord(t[0])] for t in texts], dtype=np.float32)


def test_concurrent_callers_are_encoded_together_and_get_their_own_rows() -> None:
    inner = CountingEncoder()
    encoder = BatchingEncoder(inner)
    texts = [[f"{chr(0x4e00 + i)}" * (i + 1)] for i in range(12)] + [["甲乙", "丙"]]
    with ThreadPoolExecutor(len(texts)) as pool:
        results = list(pool.map(encoder.encode, texts))
    for asked, got in zip(texts, results, strict=True):
        assert got.tolist() == [[len(t), ord(t[0])] for t in asked]
    assert sum(inner.calls) == 14  # every text encoded exactly once
    assert len(inner.calls) < len(texts)  # and in fewer calls than callers


def test_a_lone_caller_is_encoded_at_once() -> None:
    inner = CountingEncoder(seconds=0)
    encoder = BatchingEncoder(inner)
    assert encoder.encode(["你好"]).tolist() == [[2, ord("你")]]
    assert inner.calls == [1]


def test_a_failed_batch_fails_its_callers_and_the_next_caller_still_succeeds() -> None:
    inner = CountingEncoder(seconds=0.05)
    encoder = BatchingEncoder(inner)
    with ThreadPoolExecutor(2) as pool:
        bad = pool.submit(encoder.encode, ["boom"])
        time.sleep(0.01)
        good_or_bad = pool.submit(encoder.encode, ["好"])
        with pytest.raises(RuntimeError):
            bad.result()
        try:  # encoded with the failing batch (it fails too) or after it (it succeeds): never hangs
            assert good_or_bad.result(timeout=5).tolist() == [[1, ord("好")]]
        except RuntimeError:
            pass
    assert encoder.encode(["好"]).tolist() == [[1, ord("好")]]


def test_batched_vectors_equal_single_ones_with_the_real_encoder() -> None:
    real = USEM3Encoder()
    encoder = BatchingEncoder(real)
    questions = ["我的卡丢了", "信用卡账单怎么查", "转账限额是多少", "网点几点开门", "ATM吞卡了怎么办", "查余额"]
    with ThreadPoolExecutor(len(questions)) as pool:
        batched = np.vstack(list(pool.map(lambda q: encoder.encode([q]), questions)))
    single = np.vstack([real.encode([q]) for q in questions])
    assert np.abs(batched - single).max() < 1e-5
