"""An ELSA 3 (3.7.x) REST API simulator for the demo, the tests and the benchmarks.

`ElsaSimulator(SimulatorConfig(seed=..., definitions=..., instances=...))` builds a seeded,
deterministic server state (Tamma's workflows, up to a million instances) with an ASGI
`app`; mutation methods and `step(n)` move it on, `snapshot()` is the truth a mirror must
equal, and `faults` injects outages. `SimulatorConfig(realism=LIVE_REALISM)` makes it
behave like a live, busy production ELSA (late commits, status-free commits, deletions,
ties, system workflows, broken details); `package_version` picks the ELSA release. See
README.md in this folder.
"""

from tamma_sync.simulator.faults import FaultKind, Faults, FaultSpec
from tamma_sync.simulator.instances import SubStatus
from tamma_sync.simulator.realism import LIVE_REALISM, Realism, RealismProfile
from tamma_sync.simulator.runner import serve_simulator
from tamma_sync.simulator.simulator import ADMIN_API_KEY, ElsaSimulator, SimulatorConfig
from tamma_sync.simulator.snapshot import (
    CommitEvent,
    DefinitionTruth,
    DraftSaved,
    InstanceTruth,
    Snapshot,
    StepReport,
)
from tamma_sync.simulator.tamma_engine import SimulatedTammaEngine

__all__ = [
    "ADMIN_API_KEY",
    "LIVE_REALISM",
    "CommitEvent",
    "DefinitionTruth",
    "DraftSaved",
    "ElsaSimulator",
    "FaultKind",
    "FaultSpec",
    "Faults",
    "InstanceTruth",
    "Realism",
    "RealismProfile",
    "SimulatedTammaEngine",
    "SimulatorConfig",
    "Snapshot",
    "StepReport",
    "SubStatus",
    "serve_simulator",
]
