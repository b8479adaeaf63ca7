"""Background work yields the CPU to a task's critical path.

On a machine with few cores, work nobody waits for (merging a team run's finished
subtasks, pruning worktrees, recording messages, learning from a finished task)
competes for the CPU with the work a task waits on (its executors' next steps,
the orchestrator routing them). A thread marked here runs at a lower priority:
it waits while the critical path wants the CPU and runs at full speed while it
does not. On Linux the priority is per thread and inherited by the processes the
thread starts (its git commands); elsewhere this does nothing.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

NICENESS = 10
"""How much lower: a thread at +10 gets about a tenth of a contended core."""


def lower_this_thread() -> None:
    """Run the calling thread (and what it starts from now on) at background priority.

    It cannot be raised again without privileges: call it from a thread that only
    does background work."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError):
        tid = threading.get_native_id()
        now = os.getpriority(os.PRIO_PROCESS, tid)
        if now < NICENESS:
            os.setpriority(os.PRIO_PROCESS, tid, NICENESS)
