"""What differs between ELSA 3 releases, as far as a mirror client can notice.

`SimulatorConfig.package_version` picks the release; every difference below names the
elsa-core file (at the release tags) it follows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Final

_VERSION: Final = re.compile(r"\s*(\d+)\.(\d+)(?:\.(\d+))?")

#: `storageDriverTypeName` of the obsolete "Workflow" driver; its namespace never changed
#: (src/modules/Elsa.Workflows.Core/Services/WorkflowStorageDriver.cs up to 3.2.x,
#: src/modules/Elsa.Workflows.Core/VariableStorageDrivers/WorkflowStorageDriver.cs from
#: 3.3.0, which keeps `namespace Elsa.Workflows.Services` for backwards compatibility).
WORKFLOW_STORAGE_DRIVER: Final = (
    "Elsa.Workflows.Services.WorkflowStorageDriver, Elsa.Workflows.Core"
)
#: The "Workflow Instance" driver of 3.2.x
#: (src/modules/Elsa.Workflows.Core/Services/WorkflowInstanceStorageDriver.cs).
INSTANCE_STORAGE_DRIVER_3_2: Final = (
    "Elsa.Workflows.Services.WorkflowInstanceStorageDriver, Elsa.Workflows.Core"
)
#: The "Workflow Instance" driver from 3.3.0, moved to `namespace Elsa.Workflows`
#: (src/modules/Elsa.Workflows.Core/VariableStorageDrivers/WorkflowInstanceStorageDriver.cs).
INSTANCE_STORAGE_DRIVER: Final = "Elsa.Workflows.WorkflowInstanceStorageDriver, Elsa.Workflows.Core"
#: `WorkflowStorageDriver.VariablesDictionaryStateKey`.
WORKFLOW_VARIABLES_KEY: Final = "PersistentVariablesDictionary"
#: `WorkflowInstanceStorageDriver.VariablesDictionaryStateKey`.
INSTANCE_VARIABLES_KEY: Final = "Variables"


class ContextPolicy(Enum):
    """Which activity execution contexts a release persists in the workflow state
    (`GetActiveActivityExecutionContexts`: src/modules/Elsa.Workflows.Core/Services/
    WorkflowStateExtractor.cs up to 3.3, src/modules/Elsa.Workflows.Core/Contexts/
    WorkflowExecutionContext.cs from 3.4)."""

    #: 3.0.x: every context, completed ones included.
    ALL = "all"
    #: 3.1.x: only contexts that are not completed (Completed or Canceled); an ended
    #: Finished or Cancelled instance keeps none, so its variables are gone.
    ACTIVE = "active"
    #: 3.2.0+: not completed, plus the root Workflow context, which keeps the
    #: workflow-level variables (ActivityExecutionContext.Complete.cs deletes variables of
    #: non-root contexts only).
    ACTIVE_AND_ROOT = "active-and-root"


@dataclass(frozen=True, order=True, slots=True)
class ElsaVersion:
    """An ELSA 3 release (pre-release suffixes count as the release itself)."""

    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> ElsaVersion:
        """`3.7.1`, `3.3.0-rc2`, `3.1`; raises ValueError for anything that is not 3.x."""
        match = _VERSION.match(text)
        if match is None:
            raise ValueError(f"not an ELSA version: {text!r}")
        major, minor, patch = (int(part or 0) for part in match.groups())
        if major != 3:
            raise ValueError(f"the simulator speaks ELSA 3.x, not {text!r}")
        return cls(major, minor, patch)

    def at_least(self, minor: int, patch: int = 0) -> bool:
        """Whether this is 3.`minor`.`patch` or later."""
        return (self.minor, self.patch) >= (minor, patch)

    # -- routes and request fields --------------------------------------------------------

    @property
    def has_list_post(self) -> bool:
        """`POST /workflow-instances` with a JSON body (timestampFilters, isSystem, name,
        hasIncidents) from 3.1.0; 3.0.x has `Get("/workflow-instances")` only
        (src/modules/Elsa.Workflows.Api/Endpoints/WorkflowInstances/List/Endpoint.cs)."""
        return self.at_least(1)

    @property
    def has_system_workflows(self) -> bool:
        """`IsSystem` on definitions, instances and workflow state, and the `isSystem`
        filters, from 3.1.0 (src/modules/Elsa.Workflows.Management/Filters/
        WorkflowInstanceFilter.cs, WorkflowDefinitionFilter.cs)."""
        return self.at_least(1)

    @property
    def has_name_filter(self) -> bool:
        """The instance list passes `Name` to its filter from 3.3.0 (List/Endpoint.cs)."""
        return self.at_least(3)

    @property
    def has_execution_state(self) -> bool:
        """`GET /workflow-instances/{id}/execution-state` from 3.2.0
        (src/modules/Elsa.Workflows.Api/Endpoints/WorkflowInstances/ExecutionState/
        Endpoint.cs)."""
        return self.at_least(2)

    @property
    def has_variables_route(self) -> bool:
        """`GET /workflow-instances/{id}/variables` from 3.3.0
        (src/modules/Elsa.Workflows.Api/Endpoints/WorkflowInstances/Variables/List/
        Endpoint.cs)."""
        return self.at_least(3)

    @property
    def has_cancel_route(self) -> bool:
        """`POST /cancel/workflow-instances/{id}` from 3.1.0
        (src/modules/Elsa.Workflows.Api/Endpoints/WorkflowInstances/Cancel/Endpoint.cs)."""
        return self.at_least(1)

    # -- workflow state -------------------------------------------------------------------

    @property
    def contexts(self) -> ContextPolicy:
        """Which execution contexts the workflow state keeps."""
        if not self.at_least(1):
            return ContextPolicy.ALL
        if not self.at_least(2):
            return ContextPolicy.ACTIVE
        return ContextPolicy.ACTIVE_AND_ROOT

    @property
    def has_instance_storage_driver(self) -> bool:
        """The "Workflow Instance" storage driver exists from 3.2.1; before, variables use
        the "Workflow" driver."""
        return self.at_least(2, 1)

    def storage_driver(self, legacy: bool) -> str:
        """The `storageDriverTypeName` a definition's variables declare; `legacy`: the
        definition still declares the obsolete "Workflow" driver."""
        if legacy or not self.has_instance_storage_driver:
            return WORKFLOW_STORAGE_DRIVER
        return INSTANCE_STORAGE_DRIVER if self.at_least(3) else INSTANCE_STORAGE_DRIVER_3_2

    def variables_key(self, legacy: bool) -> str:
        """The root context `properties` key holding the variables (by variable id)."""
        if legacy or not self.has_instance_storage_driver:
            return WORKFLOW_VARIABLES_KEY
        return INSTANCE_VARIABLES_KEY

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"
