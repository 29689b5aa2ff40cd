"""How CPython runs tamma-sync's long-running processes (`tamma-sync serve`, `sync` and
`demo`): when its garbage collector runs, and how soon a thread waiting for the GIL gets
it."""

from __future__ import annotations

import gc
import sys

#: Container objects allocated (net of those freed) between two collections of the young
#: generation. CPython's default, 700, suits programs whose objects either die at once or
#: live for good.
YOUNG_COLLECTION_THRESHOLD = 100_000
#: Longest a thread waiting for the GIL waits before the running one is asked to let go,
#: in seconds. CPython's default is 0.005.
GIL_SWITCH_INTERVAL = 0.001


def tune_runtime() -> None:
    """Tune the collector (`_tune_collector`) and the GIL's switch interval.

    SQLite's statements run in aiosqlite's threads, which let go of the GIL while SQLite
    works and need it back after each statement. While the event loop's thread is busy
    (an initial sync making its next pages ready), CPython hands it back only after the
    switch interval: at 5 ms, a sync batch of 5,000 instances (about 18 statements) took
    190 ms to write for 100 ms of SQLite's CPU. At 1 ms an initial sync of 100,000
    instances into SQLite took 4 to 5 % less time."""
    _tune_collector()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)


def _tune_collector() -> None:
    """Collect the young generation after `YOUNG_COLLECTION_THRESHOLD` allocations instead
    of 700. A sync page is tens of thousands of objects that live through a few steps (read,
    made into rows, written) and then die: at 700 the collector passed over each page
    several times and moved it to the older generations, whose collections then followed
    (full ones of 0.1 s each): 2.5 of an initial sync's 7.9 s of CPU at 100,000 instances.
    At 20,000 it still collected 56 times, each pass over the batches being written,
    0.6 s of the event loop's 3.4 s; at 100,000 twice, 0.06 s, with the same peak memory.
    Reference cycles are still collected, only later; the older generations keep
    CPython's thresholds."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)
