"""How often CPython's garbage collector runs in tamma-sync's long-running processes
(`tamma-sync serve`, `sync` and `demo`)."""

from __future__ import annotations

import gc

#: Container objects allocated (net of those freed) between two collections of the young
#: generation. CPython's default, 700, suits programs whose objects either die at once or
#: live for good.
YOUNG_COLLECTION_THRESHOLD = 20_000


def tune_collector() -> None:
    """Collect the young generation after `YOUNG_COLLECTION_THRESHOLD` allocations instead
    of 700. A sync page is tens of thousands of objects that live through a few steps (read,
    made into rows, written) and then die: at 700 the collector passed over each page
    several times and moved it to the older generations, whose collections then followed
    (full ones of 0.1 s each): 2.5 of an initial sync's 7.9 s of CPU at 100,000 instances,
    0.1 s at 20,000. Reference cycles are still collected, only later; the older
    generations keep CPython's thresholds."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)
