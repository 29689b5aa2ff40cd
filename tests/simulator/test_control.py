"""The /_simulator control API drives the same state the ELSA routes serve."""

from __future__ import annotations

import httpx

from tamma_sync.simulator import ElsaSimulator

MENTORSHIP = "tamma-autonomous-mentorship"


def test_state_step_and_snapshot(control: httpx.Client, simulator: ElsaSimulator) -> None:
    state = control.get("/state").json()
    assert sum(state["instances"].values()) == 300 and state["definitions"] == 12
    assert state["pendingCommits"] == 0, "the quiet simulator commits at once"
    assert control.post("/commits/flush", json={}).json() == {"flushed": 0}
    step = control.post("/step", json={"steps": 25}).json()
    assert len(step["created"]) + len(step["updated"]) > 0
    assert step["now"] == simulator.now()
    snapshot = control.get("/snapshot", params={"offset": 2, "limit": 3}).json()
    assert snapshot["instanceCount"] == 300 + len(step["created"])
    assert [i["id"] for i in snapshot["instances"]] == simulator.instance_ids()[2:5]
    assert snapshot["definitions"][MENTORSHIP]["version"] == 3
    light = control.get("/snapshot", params={"limit": 1, "details": "false"}).json()
    assert light["instances"][0]["variables"] is None


def test_instance_mutations(control: httpx.Client, elsa: httpx.Client) -> None:
    ids = control.post("/instances", json={"count": 2, "definitionId": MENTORSHIP}).json()["ids"]
    assert len(ids) == 2
    moved = control.post("/instances/progress", json={"ids": ids, "to": "Suspended"}).json()
    assert moved == {"updated": ids}
    assert elsa.get(f"/workflow-instances/{ids[0]}").json()["subStatus"] == "Suspended"
    assert control.post("/instances/delete", json={"ids": ids}).json() == {"deleted": 2}
    assert elsa.get(f"/workflow-instances/{ids[0]}").status_code == 404
    bad = control.post("/instances/progress", json={"ids": ids, "to": "Sleeping"})
    assert bad.status_code == 400
    assert control.post("/instances", json={"definitionId": "nope"}).status_code == 400


def test_definition_mutations(control: httpx.Client, elsa: httpx.Client) -> None:
    saved = control.post(f"/definitions/{MENTORSHIP}/save-draft").json()
    assert saved["version"] == 4 and saved["inPlace"] is False
    again = control.post(f"/definitions/{MENTORSHIP}/save-draft").json()
    assert again == {**saved, "inPlace": True}
    assert control.post(f"/definitions/{MENTORSHIP}/publish").json() == {"id": saved["id"]}
    published = elsa.get(
        f"/workflow-definitions/{MENTORSHIP}", params={"versionOptions": "Published"}
    )
    assert published.json()["id"] == saved["id"]
    deleted = control.delete(f"/definitions/{MENTORSHIP}").json()
    assert deleted["deletedInstances"] > 0
    assert control.delete(f"/definitions/{MENTORSHIP}").status_code == 404
    assert control.post("/definitions/IssueSelectionWorkflow/save-draft").status_code == 409
