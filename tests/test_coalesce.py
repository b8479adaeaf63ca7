"""Coalesced: many callers, one call in flight (what GET /api/v1/status polls share)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from shoal.api.coalesce import Coalesced


def test_callers_during_a_call_share_it_and_later_ones_make_a_new_one() -> None:
    gate = threading.Event()
    calls: list[int] = []

    def ask() -> int:
        calls.append(1)
        gate.wait(10)
        return len(calls)

    status = Coalesced(ask)
    with ThreadPoolExecutor(8) as pool:
        answers = [pool.submit(status) for _ in range(8)]
        while not calls:  # the leader is in its call; the others arrive meanwhile
            threading.Event().wait(0.01)
        threading.Event().wait(0.2)
        gate.set()
        assert [a.result(10) for a in answers] == [1] * 8
    assert len(calls) == 1
    assert status() == 2  # nothing kept once the call is over


def test_an_error_reaches_every_caller_of_that_call() -> None:
    gate = threading.Event()

    def fails() -> int:
        gate.wait(10)
        raise TimeoutError("the orchestrator did not answer")

    status = Coalesced(fails)
    with ThreadPoolExecutor(4) as pool:
        answers = [pool.submit(status) for _ in range(4)]
        threading.Event().wait(0.2)
        gate.set()
        for answer in answers:
            with pytest.raises(TimeoutError, match="did not answer"):
                answer.result(10)
