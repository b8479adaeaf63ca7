"""The orchestrator's worker threads: a job never waits behind another, idle ones are reused."""

from __future__ import annotations

import threading

from shoal.orchestrator.services.workers import Threads
from tests.conftest import wait_for


def test_a_job_runs_while_another_blocks() -> None:
    threads = Threads()
    release, done = threading.Event(), threading.Event()
    threads.submit(lambda: release.wait(30))
    threads.submit(done.set)
    try:
        assert done.wait(10)  # the second did not wait for the first
    finally:
        release.set()


def test_an_idle_thread_takes_the_next_job_instead_of_a_new_one() -> None:
    threads = Threads()
    ran: list[threading.Thread] = []
    for _ in range(20):
        done = threading.Event()
        threads.submit(lambda d=done: (ran.append(threading.current_thread()), d.set()))
        assert done.wait(10)
        wait_for(lambda: threads.idle == 1, what="the thread idle again")
    assert len(set(ran)) == 1


def test_a_thread_idle_too_long_ends_and_a_later_job_still_runs() -> None:
    threads = Threads(idle_for=0.2)
    ran: list[threading.Thread] = []
    done = threading.Event()
    threads.submit(lambda: (ran.append(threading.current_thread()), done.set()))
    assert done.wait(10)
    wait_for(lambda: not ran[0].is_alive(), what="the idle thread to end")
    assert threads.idle == 0
    again = threading.Event()
    threads.submit(again.set)
    assert again.wait(10)
