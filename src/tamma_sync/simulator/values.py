"""The values of an instance's variables, derived from its row and small state.

Tamma's workflows: the mentorship story state machine and the issue flows. A status-free
commit (realism) adds a `checkpoint` that counts them to one variable of each workflow
(`codeContext`, `lastResult`; the alteration plan's job count), so its value changes
while the instance's status and `updatedAt` do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tamma_sync.simulator.catalog import (
    DRAFT_NOTE_VARIABLE,
    JOB_COUNT_VARIABLE,
    JSON,
    PLAN_ID_VARIABLE,
    Template,
)
from tamma_sync.simulator.ids import IdCodec
from tamma_sync.simulator.instances import SubStatus

MAX_RETRIES: Final = 3
_SESSION: Final = 0x5E
_LEVELS: Final = ("ready", "needs-guidance", "needs-pairing")
_REPOSITORIES: Final = ("tamma/app", "tamma/api", "tamma/dashboard", "tamma/elsa")


@dataclass(frozen=True, slots=True)
class VariableInputs:
    """What the values depend on."""

    row: int
    template: Template
    revision: int
    sub_status: SubStatus
    stage: int
    retries: int
    edits: int
    number: int
    current_state: str
    plan_id: str


def variable_values(codec: IdCodec, inputs: VariableInputs) -> dict[str, JSON]:
    """Variable name -> value (variables left out are unset or at their default)."""
    row, stage, retries = inputs.row, inputs.stage, inputs.retries
    template, number, edits = inputs.template, inputs.number, inputs.edits
    h = codec.hash(_SESSION, row)
    finished = inputs.sub_status is SubStatus.Finished
    # A status-free commit (realism) saves progress: the checkpoint counts them.
    checkpoint: dict[str, JSON] = {"checkpoint": edits} if edits else {}
    if template.is_system:
        jobs = 1 + h % 12 if stage > 0 or finished else 0
        return {PLAN_ID_VARIABLE: inputs.plan_id, JOB_COUNT_VARIABLE: jobs + edits}
    values: dict[str, JSON] = {
        "currentState": inputs.current_state,
        "retryCount": retries,
        "maxRetries": MAX_RETRIES,
    }
    if template.correlation_prefix == "STORY":
        level = _LEVELS[h % 3]
        values |= {
            "storyId": f"STORY-{number}",
            "juniorId": f"junior-{(h >> 8) % 40 + 1:02d}",
            "sessionId": _uuid(h, codec.hash(_SESSION, row, 1)),
            "codeContext": {
                "repository": _REPOSITORIES[(h >> 16) % 4],
                "files": [f"src/stories/story_{number}.py", "tests/test_story.py"],
                **checkpoint,
            }
            if stage > 0 or checkpoint
            else None,
            "aiAnalysis": {
                "summary": f"Story {number} analysed",
                "confidence": 0.5 + h % 50 / 100,
            }
            if stage > 0
            else None,
            "assessmentResult": {"level": level, "score": 40 + (h >> 24) % 60}
            if stage > 1
            else None,
            "guidanceResult": {"hints": 1 + retries, "level": level}
            if stage > 1 and level != "ready"
            else None,
            "progressStatus": "not-started"
            if stage < 2
            else ("complete" if stage > 2 else ("blocked" if retries else "in-progress")),
            "blockerInfo": {"kind": "dependency", "attempt": retries}
            if retries and stage == 2
            else None,
            "pullRequestNumber": 100 + (h >> 32) % 900 if stage > 2 else None,
            "qualityResult": {"passed": True, "coverage": 70 + (h >> 40) % 30}
            if stage > 2
            else None,
            "reviewStatus": None
            if stage < 3
            else ("approved" if stage > 3 else ("changes-requested" if retries else "pending")),
        }
    else:
        waits = len(template.waits)
        values |= {
            "issueNumber": number,
            "repository": _REPOSITORIES[(h >> 16) % 4],
            "branchName": f"tamma/issue-{number}" if stage > 0 else None,
            "pullRequestNumber": 100 + (h >> 32) % 900 if stage >= waits - 1 else None,
            "lastResult": {
                "ok": inputs.sub_status is not SubStatus.Faulted,
                "stage": stage,
                **checkpoint,
            }
            if stage > 0 or finished or checkpoint
            else None,
        }
    if inputs.revision:
        values[DRAFT_NOTE_VARIABLE] = f"revision {inputs.revision}"
    return values


def _uuid(high: int, low: int) -> str:
    text = f"{high:016x}{low:016x}"
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-a{text[17:20]}-{text[20:32]}"
