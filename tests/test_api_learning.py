"""``/api/v1/learnings`` and ``/api/v1/skills/proposed``: what shoal learned and the skills
it proposes, decided over real HTTP from a real orchestrator as ``shoal learn`` decides."""

from __future__ import annotations

import json
from pathlib import Path

from shoal.paths import Home
from tests.conftest import shoal
from tests.test_api import TOKEN, request, serve


def propose(home: Home, name: str, description: str = "d") -> Path:
    """A proposal as the pattern-miner leaves one (tests/test_learning.py does the same)."""
    proposed = home.root / "skills" / "proposed" / name
    proposed.mkdir(parents=True)
    (proposed / "SKILL.md").write_text(
        f"---\nname: {name}\ndescription: {description}\n---\nbody\n"
    )
    return proposed


def test_proposals_are_listed_approved_and_dismissed_as_shoal_learn_does(home: Home) -> None:
    url = serve("--port", "0", env={"SHOAL_API_TOKEN": TOKEN})
    propose(home, "fix-add-functions", "Recurring task: fix add")
    propose(home, "rename-things")
    for method, path in (
        ("GET", "/learnings"),
        ("GET", "/skills/proposed"),
        ("POST", "/skills/proposed/fix-add-functions/approve"),
        ("POST", "/skills/proposed/rename-things/dismiss"),
    ):
        status, body = request(method, url + path)
        assert status == 401 and body["error"]["code"] == "unauthorized", (path, body)
    assert (home.root / "skills" / "proposed" / "fix-add-functions" / "SKILL.md").is_file()

    status, listed = request("GET", f"{url}/skills/proposed", token=TOKEN)
    assert status == 200 and listed["proposals"] == [
        {"name": "fix-add-functions", "description": "Recurring task: fix add"},
        {"name": "rename-things", "description": "d"},
    ]
    for path in ("/skills/proposed/no-such/approve", "/skills/proposed/..%2Fx/dismiss"):
        status, body = request("POST", url + path, token=TOKEN)
        assert status == 404 and "no proposed skill" in body["error"]["message"], body

    status, done = request("POST", f"{url}/skills/proposed/fix-add-functions/approve",
                           token=TOKEN)  # fmt: skip
    installed = home.root / "skills" / "fix-add-functions"
    assert status == 200 and done == {"name": "fix-add-functions", "decision": "approved",
                                      "path": str(installed)}  # fmt: skip
    assert (installed / "SKILL.md").read_text().startswith("---\nname: fix-add-functions")
    assert not (home.root / "skills" / "proposed" / "fix-add-functions").exists()
    names = [
        p["name"] for p in request("GET", f"{url}/skills/proposed", token=TOKEN)[1]["proposals"]
    ]
    assert names == ["rename-things"]
    # What the CLI sees is what the API did, and the other way round.
    assert "fix-add-functions" not in shoal("learn", "list", check=True).stdout
    status, done = request("POST", f"{url}/skills/proposed/rename-things/dismiss", token=TOKEN)
    assert status == 200 and done["decision"] == "dismissed"
    assert (home.root / "skills" / "dismissed" / "rename-things" / "SKILL.md").is_file()
    assert request("GET", f"{url}/skills/proposed", token=TOKEN)[1] == {"proposals": []}
    # An approved name proposed again cannot overwrite the installed skill: 409.
    propose(home, "fix-add-functions")
    status, body = request("POST", f"{url}/skills/proposed/fix-add-functions/approve",
                           token=TOKEN)  # fmt: skip
    assert status == 409 and "already exists" in body["error"]["message"], body

    paths = request("GET", f"{url}/openapi.json", token=TOKEN)[1]["paths"]
    assert "ProposalDecided" in json.dumps(paths["/api/v1/skills/proposed/{name}/approve"])
    assert "ProposalList" in json.dumps(paths["/api/v1/skills/proposed"])
    assert "LearningList" in json.dumps(paths["/api/v1/learnings"])


def test_learnings_are_listed_with_their_score_and_uses(home: Home) -> None:
    from shoal import daemon
    from shoal.messages.memory import MemoryRemember, NewLearning

    url = serve("--port", "0", env={"SHOAL_API_TOKEN": TOKEN})
    assert request("GET", f"{url}/learnings", token=TOKEN) == (200, {"learnings": []})
    said = "Run pytest with -x in this repository."
    learnt = [NewLearning(kind="convention", content=said, confidence=0.8)]
    daemon.request(home, MemoryRemember(learnings=learnt))
    daemon.request(home, MemoryRemember(learnings=learnt))  # a near-duplicate reinforces it
    status, body = request("GET", f"{url}/learnings?limit=5", token=TOKEN)
    assert status == 200, body
    (one,) = body["learnings"]
    assert (one["kind"], one["content"], one["uses"]) == ("convention", said, 1), one
    assert 0.8 <= one["confidence"] <= 1 and 0 < one["score"] <= one["confidence"], one
    assert request("GET", f"{url}/learnings?limit=0", token=TOKEN)[0] == 422
