"""A review's findings as SARIF 2.1.0, the format CI systems and editors read.

One run of the tool ``shoal``; each finding is a result whose rule is the
finding's title (so the same problem found twice is one rule), with its level
from the severity (blocker: error, important: warning, minor: note), its
message (title, detail and fix) and, when it names one, its file and line
relative to the repository's root (``%SRCROOT%``). The checks go in the run's
properties; tests/test_review.py validates the output against the official schema.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.messages.tasks import Finding, ReviewResult

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {"blocker": "error", "important": "warning", "minor": "note"}


def sarif(result: ReviewResult, repo: Path, label: str, version: str) -> dict[str, Any]:
    """The SARIF log of one review."""
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for finding in result.judge.findings:
        rule = rule_id(result.rubric, finding.title)
        rules.setdefault(rule, _rule(rule, finding))
        results.append(_result(finding, rule, list(rules).index(rule)))
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "shoal",
                        "version": version,
                        "rules": list(rules.values()),
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": repo.resolve().as_uri() + "/"}},
                "invocations": [{"executionSuccessful": True}],
                "results": results,
                "properties": {
                    "reviewed": label,
                    "rubric": result.rubric,
                    "score": result.score,
                    "tests": result.tests,
                    "checks": [
                        {"name": c.name, "kind": c.kind, "status": c.status, "passed": c.passed}
                        for c in result.checks
                    ],
                },
            }
        ],
    }


def rule_id(rubric: str, title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "finding"
    return f"{rubric}/{slug}"


def _rule(rule: str, finding: Finding) -> dict[str, Any]:
    return {
        "id": rule,
        "name": rule.split("/", 1)[1],
        "shortDescription": {"text": finding.title},
        "defaultConfiguration": {"level": LEVELS[finding.severity]},
    }


def _result(finding: Finding, rule: str, index: int) -> dict[str, Any]:
    text = finding.title
    if finding.detail:
        text += f": {finding.detail}"
    if finding.fix:
        text += f" Fix: {finding.fix}"
    out: dict[str, Any] = {
        "ruleId": rule,
        "ruleIndex": index,
        "level": LEVELS[finding.severity],
        "message": {"text": text},
        "properties": {"severity": finding.severity, "fix": finding.fix},
    }
    if finding.file:
        location: dict[str, Any] = {
            "artifactLocation": {"uri": _uri(finding.file), "uriBaseId": "%SRCROOT%"}
        }
        if finding.line:
            location["region"] = {"startLine": finding.line}
        out["locations"] = [{"physicalLocation": location}]
    return out


def _uri(path: str) -> str:
    """A path relative to the repository as a relative URI reference (``a/b%20c.py``)."""
    from urllib.parse import quote

    return quote(path.replace("\\", "/").lstrip("/"))
