"""Fault injection for the ELSA routes: outages, errors, slowness, broken bodies, short pages.

A fault fires on a request when its path filter matches and its probability draw succeeds;
with a `count` it disarms itself after affecting that many requests. Draws use a seeded
generator, so a run with probabilistic faults is reproducible request by request.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass
from typing import Final, Literal, get_args

FaultKind = Literal["unavailable", "error", "slow", "malformed", "short_page"]
FAULT_KINDS: Final[tuple[str, ...]] = get_args(FaultKind)


@dataclass(slots=True)
class FaultSpec:
    """One armed fault.

    kind:
      - ``unavailable``: 503 Service Unavailable, before authentication and handling.
      - ``error``: 500 with an empty body.
      - ``slow``: wait ``delay`` seconds, then answer normally.
      - ``malformed``: the real answer's JSON cut in half, still 200 (bodies only).
      - ``short_page``: a list page missing ``drop`` items (default: half) while
        ``totalCount`` still counts them (paged lists only).
    count: requests to affect before disarming (None: until cleared).
    probability: chance that a matching request is affected.
    path: only requests whose path contains this text.
    """

    kind: FaultKind
    count: int | None = None
    probability: float = 1.0
    path: str | None = None
    delay: float = 1.0
    drop: int | None = None

    def to_wire(self) -> dict[str, object]:
        """camelCase JSON for the control API."""
        return asdict(self)


class Faults:
    """The armed faults of one simulator (thread-safe)."""

    def __init__(self, seed: int) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._specs: list[FaultSpec] = []

    def add(self, spec: FaultSpec) -> FaultSpec:
        """Arm a fault; returns it."""
        if spec.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {spec.kind!r}; expected one of {FAULT_KINDS}")
        if not 0.0 <= spec.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if spec.count is not None and spec.count < 1:
            raise ValueError("count must be at least 1 (or None: until cleared)")
        with self._lock:
            self._specs.append(spec)
        return spec

    def inject(
        self,
        kind: FaultKind,
        *,
        count: int | None = None,
        probability: float = 1.0,
        path: str | None = None,
        delay: float = 1.0,
        drop: int | None = None,
    ) -> FaultSpec:
        """Arm a fault from keyword arguments (see FaultSpec)."""
        return self.add(FaultSpec(kind, count, probability, path, delay, drop))

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._specs.clear()

    def active(self) -> list[FaultSpec]:
        """The armed faults."""
        with self._lock:
            return list(self._specs)

    def fire(self, kind: FaultKind, path: str) -> FaultSpec | None:
        """The fault of `kind` that affects this request, if any (consuming one count)."""
        with self._lock:
            for spec in self._specs:
                if spec.kind != kind or (spec.path is not None and spec.path not in path):
                    continue
                if spec.probability < 1.0 and self._random.random() >= spec.probability:
                    continue
                if spec.count is not None:
                    spec.count -= 1
                    if spec.count <= 0:
                        self._specs.remove(spec)
                return spec
        return None
