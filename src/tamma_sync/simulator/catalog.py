"""Tamma's workflows as sample data: activities, wait points, variables, `currentState` values.

The first definition is `tamma-autonomous-mentorship` (the engine-mvp JSON workflow); the
next ones are the later code-first C# workflows. A template describes one workflow; the
activity tree served for a definition version is built from it, the version number (later
versions gained activities) and the draft revision (draft edits change tree and variables).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Final

from tamma_sync.simulator.ids import IdCodec

JSON = object
"""Any JSON value; kept loose on purpose: these are opaque blobs to a mirror."""

STRING: Final = "String"
INT32: Final = "Int32"
OBJECT: Final = "Object"


@dataclass(frozen=True, slots=True)
class Step:
    """One top-level activity. A step with `wait` is where an instance can be suspended."""

    activity_id: str
    type: str
    state: str | None = None
    wait: str | None = None
    #: `currentState` values an instance shows here after its 1st, 2nd, ... retry.
    retry_states: tuple[str, ...] = ()
    inputs: Mapping[str, tuple[str, str, object]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VariableSpec:
    """A declared workflow variable."""

    name: str
    type_name: str
    default: str | None = None


@dataclass(frozen=True, slots=True)
class Template:
    """A workflow: what its definitions look like and how its instances move."""

    key: str
    name: str
    description: str | None
    root_type: str
    steps: tuple[Step, ...]
    variables: tuple[VariableSpec, ...]
    correlation_prefix: str
    initial_state: str
    final_state: str = "COMPLETED"
    #: ELSA's own system workflow (`isSystem`), not one of Tamma's.
    is_system: bool = False

    @property
    def waits(self) -> tuple[Step, ...]:
        """The steps an instance can wait at, in order."""
        return tuple(step for step in self.steps if step.wait is not None)


def _literal(type_name: str, value: object) -> tuple[str, str, object]:
    return (type_name, "Literal", value)


def _js(expression: str, type_name: str = STRING) -> tuple[str, str, object]:
    return (type_name, "JavaScript", expression)


_MENTORSHIP_VARIABLES: Final = (
    VariableSpec("storyId", STRING),
    VariableSpec("juniorId", STRING),
    VariableSpec("sessionId", "Guid"),
    VariableSpec("currentState", STRING, "INIT_STORY_PROCESSING"),
    VariableSpec("assessmentResult", OBJECT),
    VariableSpec("progressStatus", STRING),
    VariableSpec("qualityResult", OBJECT),
    VariableSpec("reviewStatus", STRING),
    VariableSpec("blockerInfo", OBJECT),
    VariableSpec("guidanceResult", OBJECT),
    VariableSpec("codeContext", OBJECT),
    VariableSpec("aiAnalysis", OBJECT),
    VariableSpec("pullRequestNumber", INT32),
    VariableSpec("retryCount", INT32, "0"),
    VariableSpec("maxRetries", INT32, "3"),
)

MENTORSHIP: Final = Template(
    key="tamma-autonomous-mentorship",
    name="Tamma Autonomous Mentorship",
    description=(
        "Complete autonomous mentorship workflow for junior developers implementing the 20+ "
        "state machine with AI-powered guidance"
    ),
    root_type="Elsa.Sequence",
    correlation_prefix="STORY",
    initial_state="INIT_STORY_PROCESSING",
    variables=_MENTORSHIP_VARIABLES,
    steps=(
        Step(
            "init-log",
            "Elsa.WriteLine",
            inputs={"text": _js("`Starting mentorship for story ${getVariable('storyId')}`")},
        ),
        Step(
            "set-initial-state",
            "Elsa.SetVariable",
            inputs={"value": _literal(STRING, "INIT_STORY_PROCESSING")},
        ),
        Step(
            "gather-initial-context",
            "Tamma.AI.ContextGathering",
            state="INIT_STORY_PROCESSING",
            wait="Tamma.AI.ContextGathering",
            inputs={"storyId": _js("getVariable('storyId')")},
        ),
        Step(
            "assess-capability",
            "Tamma.Mentorship.AssessJuniorCapability",
            state="PLAN_DECOMPOSITION",
            wait="Tamma.Mentorship.AssessJuniorCapability",
            retry_states=("CLARIFY_REQUIREMENTS", "RE_EXPLAIN_STORY"),
            inputs={"juniorId": _js("getVariable('juniorId')")},
        ),
        Step(
            "assessment-switch",
            "Elsa.Switch",
            inputs={"mode": _literal(STRING, "MatchFirst")},
        ),
        Step(
            "monitor-progress",
            "Tamma.Mentorship.MonitorImplementation",
            state="START_IMPLEMENTATION",
            wait="Tamma.Mentorship.MonitorImplementation",
            retry_states=("DIAGNOSE_BLOCKER", "AUTO_FIX_ISSUES"),
            inputs={"checkInterval": _literal("TimeSpan", "00:01:00")},
        ),
        Step(
            "prepare-review",
            "Tamma.Mentorship.CodeReview",
            inputs={"action": _literal(STRING, "Prepare")},
        ),
        Step(
            "monitor-review",
            "Tamma.Mentorship.CodeReview",
            state="MONITOR_REVIEW",
            wait="Tamma.Mentorship.CodeReview",
            retry_states=("GUIDE_FIXES",),
            inputs={"action": _literal(STRING, "Monitor")},
        ),
        Step(
            "review-status-switch",
            "Elsa.Switch",
            inputs={"mode": _literal(STRING, "MatchFirst")},
        ),
        Step(
            "merge-and-complete",
            "Tamma.Mentorship.MergeComplete",
            state="MERGE_AND_COMPLETE",
            wait="Tamma.Mentorship.MergeComplete",
            inputs={"pullRequestNumber": _js("getVariable('pullRequestNumber')", INT32)},
        ),
        Step(
            "complete-log",
            "Elsa.WriteLine",
            inputs={"text": _literal(STRING, "Mentorship session completed")},
        ),
    ),
)

_ISSUE_VARIABLES: Final = (
    VariableSpec("issueNumber", INT32),
    VariableSpec("repository", STRING, "tamma/app"),
    VariableSpec("branchName", STRING),
    VariableSpec("currentState", STRING),
    VariableSpec("retryCount", INT32, "0"),
    VariableSpec("maxRetries", INT32, "3"),
    VariableSpec("pullRequestNumber", INT32),
    VariableSpec("lastResult", OBJECT),
)


def _issue_flow(
    key: str, description: str, steps: list[tuple[str, str, str | None, str | None]]
) -> Template:
    """A code-first issue workflow: (activity id, type, currentState, bookmark name)."""
    return Template(
        key=key,
        name=key,
        description=description,
        root_type="Elsa.Flowchart",
        correlation_prefix="issue",
        initial_state=next(state for _, _, state, _ in steps if state),
        variables=_ISSUE_VARIABLES,
        steps=tuple(
            Step(activity_id, type_, state=state, wait=wait, retry_states=("RETRYING",))
            for activity_id, type_, state, wait in steps
        ),
    )


_EVENT: Final = "Elsa.Event"
_TASK: Final = "Elsa.RunTask"
_DELAY: Final = "Elsa.Delay"

_ISSUE_FLOWS: Final = (
    _issue_flow(
        "SingleIssueCycleWorkflow",
        "Takes one GitHub issue from selection to a merged pull request",
        [
            ("select-issue", "Tamma.Integration.GitHub", "SELECTING_ISSUE", None),
            ("gather-context", "Tamma.AI.ContextGathering", "GATHERING_CONTEXT", _TASK),
            ("generate-plan", "Tamma.AI.ClaudeAnalysis", "PLANNING", _TASK),
            ("await-plan-approval", _EVENT, "AWAITING_PLAN_APPROVAL", _EVENT),
            ("implement", _TASK, "IMPLEMENTING", _TASK),
            ("open-pull-request", "Tamma.Integration.GitHub", "PR_OPEN", None),
            ("await-review", _EVENT, "IN_REVIEW", _EVENT),
            ("merge", "Tamma.Integration.GitHub", "MERGING", None),
        ],
    ),
    _issue_flow(
        "AdlOrchestratorWorkflow",
        "Orchestrates the autonomous development loop across issues",
        [
            ("pick-next-issue", "Tamma.Integration.GitHub", "SELECTING_ISSUE", None),
            ("dispatch-cycle", "Elsa.DispatchWorkflow", "DISPATCHING", _EVENT),
            ("cooldown", _DELAY, "COOLDOWN", _DELAY),
            ("report-progress", "Tamma.Integration.Slack", "REPORTING", None),
        ],
    ),
    _issue_flow(
        "IssueSelectionWorkflow",
        "Ranks open issues and picks the next one to work on",
        [
            ("list-issues", "Tamma.Integration.GitHub", "LISTING", None),
            ("rank-issues", "Tamma.AI.ClaudeAnalysis", "RANKING", _TASK),
            ("claim-issue", "Tamma.Integration.GitHub", "CLAIMING", None),
        ],
    ),
    _issue_flow(
        "IssueTriageWorkflow",
        "Labels, sizes and routes a new issue",
        [
            ("read-issue", "Tamma.Integration.GitHub", "READING", None),
            ("classify", "Tamma.AI.ClaudeAnalysis", "CLASSIFYING", _TASK),
            ("await-maintainer", _EVENT, "AWAITING_MAINTAINER", _EVENT),
            ("apply-labels", "Tamma.Integration.GitHub", "LABELLING", None),
        ],
    ),
    _issue_flow(
        "TddWorkflow",
        "Red, green, refactor until the acceptance tests pass",
        [
            ("write-failing-test", _TASK, "RED", _TASK),
            ("make-test-pass", _TASK, "GREEN", _TASK),
            ("refactor", _TASK, "REFACTOR", _TASK),
            ("run-suite", "Tamma.Integration.GitHub", "VERIFYING", None),
        ],
    ),
    _issue_flow(
        "PullRequestWorkflow",
        "Opens a pull request and waits for CI",
        [
            ("push-branch", "Tamma.Integration.GitHub", "PUSHING", None),
            ("open-pull-request", "Tamma.Integration.GitHub", "PR_OPEN", None),
            ("await-ci", _EVENT, "AWAITING_CI", _EVENT),
            ("comment-summary", "Tamma.Integration.GitHub", "COMMENTING", None),
        ],
    ),
    _issue_flow(
        "CodeReviewWorkflow",
        "AI review of a pull request followed by a human decision",
        [
            ("fetch-diff", "Tamma.Integration.GitHub", "FETCHING_DIFF", None),
            ("ai-review", "Tamma.Mentorship.CodeReview", "AI_REVIEW", _TASK),
            ("await-human-review", _EVENT, "HUMAN_REVIEW", _EVENT),
        ],
    ),
    _issue_flow(
        "DeploymentPipelineWorkflow",
        "Builds, deploys to staging, waits for approval, deploys to production",
        [
            ("build", _TASK, "BUILDING", _TASK),
            ("deploy-staging", _TASK, "STAGING", _TASK),
            ("await-approval", _EVENT, "AWAITING_APPROVAL", _EVENT),
            ("deploy-production", _TASK, "PRODUCTION", _TASK),
            ("notify", "Tamma.Integration.Slack", "NOTIFYING", None),
        ],
    ),
)

#: The later workflow names without a hand-written flow: they share a generic shape.
_OTHER_NAMES: Final = (
    "ContextGatheringWorkflow",
    "PlanGenerationWorkflow",
    "PlanReviewWorkflow",
    "BranchCreationWorkflow",
    "TddWithDebugRetryWorkflow",
    "CiWithDebugRetryWorkflow",
    "MergeApprovalWorkflow",
    "MergeWorkflow",
    "ReviewFixWorkflow",
    "MentorshipWorkflow",
    "LlmCallWorkflow",
    "ResearchWorkflow",
    "ClarifyingQuestionsWorkflow",
    "DesignProposalWorkflow",
)


def _generic(name: str) -> Template:
    return _issue_flow(
        name,
        f"Tamma workflow {name}",
        [
            ("start", "Elsa.WriteLine", "STARTING", None),
            ("load-issue", "Tamma.Integration.GitHub", "LOADING", None),
            ("analyse", "Tamma.AI.ClaudeAnalysis", "ANALYSING", _TASK),
            ("await-decision", _EVENT, "AWAITING_DECISION", _EVENT),
            ("report", "Tamma.Integration.Slack", "REPORTING", None),
        ],
    )


NAMED_TEMPLATES: Final = (MENTORSHIP, *_ISSUE_FLOWS, *(_generic(name) for name in _OTHER_NAMES))

#: ELSA's alteration-plan workflow, a code-first system workflow
#: (src/modules/Elsa.Alterations/Workflows/ExecuteAlterationPlanWorkflow.cs:
#: `WithDefinitionId("Elsa.Alterations.ExecuteAlterationPlan")`, `AsSystemWorkflow()`;
#: WorkflowBuilder names it after its definition id and its two unnamed variables
#: `Variable_0`, `Variable_1`). It waits at `AlterationPlanCompleted` (a trigger).
SYSTEM_DEFINITION_ID: Final = "Elsa.Alterations.ExecuteAlterationPlan"
PLAN_ID_VARIABLE: Final = "Variable_0"
JOB_COUNT_VARIABLE: Final = "Variable_1"

ALTERATION_PLAN: Final = Template(
    key=SYSTEM_DEFINITION_ID,
    name=SYSTEM_DEFINITION_ID,
    description=None,
    root_type="Elsa.Sequence",
    correlation_prefix="plan",
    initial_state="SUBMITTED",
    final_state="PLAN_COMPLETED",
    is_system=True,
    variables=(VariableSpec(PLAN_ID_VARIABLE, STRING), VariableSpec(JOB_COUNT_VARIABLE, INT32)),
    steps=(
        Step("submit-plan", "Elsa.SubmitAlterationPlan", state="SUBMITTED"),
        Step("correlate", "Elsa.Correlate"),
        Step("generate-jobs", "Elsa.GenerateAlterationJobs", state="GENERATING_JOBS"),
        Step("dispatch-jobs", "Elsa.If", state="DISPATCHING_JOBS"),
        Step(
            "plan-completed",
            "Elsa.AlterationPlanCompleted",
            state="RUNNING_JOBS",
            wait="Elsa.AlterationPlanCompleted",
        ),
    ),
)


def template_for(position: int) -> Template:
    """The template of the `position`-th seeded definition: Tamma's, then numbered copies."""
    if position < len(NAMED_TEMPLATES):
        return NAMED_TEMPLATES[position]
    cycle = len(NAMED_TEMPLATES) - 1
    base = NAMED_TEMPLATES[1 + (position - 1) % cycle]
    number = (position - 1) // cycle + 1
    return replace(base, key=f"{base.key}-{number}", name=f"{base.name} {number}")


#: Activities each later version adds (version v has the first v-1), before the last step.
_VERSION_EXTRAS: Final = (
    ("notify-slack", "Tamma.Integration.Slack"),
    ("sync-jira", "Tamma.Integration.Jira"),
    ("send-email", "Tamma.Integration.Email"),
    ("quality-gate", "Tamma.Mentorship.QualityGateCheck"),
)

DRAFT_NOTE_VARIABLE: Final = "draftNote"


def steps_of(template: Template, version: int, revision: int) -> list[Step]:
    """The top-level steps of one definition version (after `revision` draft edits)."""
    steps = list(template.steps)
    extras = []
    for n in range(version - 1):
        activity_id, type_ = _VERSION_EXTRAS[n % len(_VERSION_EXTRAS)]
        if n >= len(_VERSION_EXTRAS):
            activity_id = f"{activity_id}-{n // len(_VERSION_EXTRAS) + 1}"
        extras.append(Step(activity_id, type_))
    if revision:
        text = _literal(STRING, f"Draft revision {revision}")
        extras.append(Step("draft-note", "Elsa.WriteLine", inputs={"text": text}))
    return steps[:-1] + extras + steps[-1:]


def variables_of(template: Template, revision: int) -> list[VariableSpec]:
    """The declared variables of one definition version."""
    variables = list(template.variables)
    if revision:
        variables.append(VariableSpec(DRAFT_NOTE_VARIABLE, STRING, f"revision {revision}"))
    return variables


def variable_id(codec: IdCodec, template: Template, name: str) -> str:
    """A variable's id: stable across versions and edits, as ELSA keeps it."""
    return format(codec.hash_text(f"variable/{template.key}/{name}"), "x")


def root_id(codec: IdCodec, template: Template) -> str:
    """The id of a workflow's root activity."""
    return format(codec.hash_text(f"root/{template.key}"), "x")


def build_root(codec: IdCodec, template: Template, version: int, revision: int) -> dict[str, JSON]:
    """The designer-style activity JSON of a definition version's root."""
    root = root_id(codec, template)
    root_node = f"Workflow1:{root}"
    counters: dict[str, int] = {}
    activities: list[dict[str, JSON]] = []
    for position, step in enumerate(steps_of(template, version, revision)):
        short = step.type.rsplit(".", 1)[-1]
        counters[short] = counters.get(short, 0) + 1
        activity: dict[str, JSON] = {
            "id": step.activity_id,
            "nodeId": f"{root_node}:{step.activity_id}",
            "name": f"{short}{counters[short]}",
            "type": step.type,
            "version": 1,
            "customProperties": {"canStartWorkflow": position == 0, "runAsynchronously": False},
            "metadata": {
                "designer": {
                    "position": {"x": 120 + 280 * (position % 4), "y": 80 + 160 * (position // 4)},
                    "size": {"width": 200, "height": 50},
                }
            },
        }
        for name, (type_name, language, value) in step.inputs.items():
            activity[name] = {
                "typeName": type_name,
                "expression": {"type": language, "value": value},
            }
        if step.type == "Elsa.SetVariable":
            activity["variable"] = {
                "id": variable_id(codec, template, "currentState"),
                "name": "currentState",
                "typeName": STRING,
            }
        if step.wait == _EVENT:
            activity["eventName"] = {
                "typeName": STRING,
                "expression": {"type": "Literal", "value": _event_name(step)},
            }
        activities.append(activity)
    tree: dict[str, JSON] = {
        "id": root,
        "nodeId": root_node,
        "name": template.root_type.rsplit(".", 1)[-1] + "1",
        "type": template.root_type,
        "version": 1,
        "customProperties": {},
        "metadata": {},
        "activities": activities,
        "variables": [],
    }
    if template.root_type == "Elsa.Flowchart":
        ids = [str(activity["id"]) for activity in activities]
        tree["connections"] = [
            {
                "source": {"activity": source, "port": "Done"},
                "target": {"activity": target, "port": "In"},
                "vertices": [],
            }
            for source, target in pairwise(ids)
        ]
    return tree


def bookmark_payload(step: Step, correlation: str) -> dict[str, JSON]:
    """The payload ELSA stores with a bookmark of this step's kind."""
    if step.wait == "Elsa.AlterationPlanCompleted":
        return {"planId": correlation}
    if step.wait == _EVENT:
        return {"eventName": _event_name(step)}
    if step.wait == _DELAY:
        return {"timeSpan": "00:05:00"}
    if step.wait == _TASK:
        return {"taskName": step.activity_id, "correlationId": correlation}
    return {"activityType": step.type, "correlationId": correlation}


def _event_name(step: Step) -> str:
    return "".join(part.title() for part in step.activity_id.split("-"))
