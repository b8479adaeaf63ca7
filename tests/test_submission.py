"""Submitting a task: what a client asked is checked in one place, in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.paths import Home
from shoal.submission import SubmitError, task_submit
from tests.conftest import shoal
from tests.test_api import TOKEN, free_port, request, serve
from tests.test_loop import make_repo


@pytest.mark.parametrize(
    ("description", "cwd", "says"),
    [
        ("fix it", "{repo}\0/x", "contains a NUL byte; give a real directory"),
        ("fix it", "a\0b", "contains a NUL byte"),
        ("fix\0it", "{repo}", "the description contains a NUL byte"),
    ],
)
def test_a_nul_byte_is_a_submit_error_in_one_line(
    home: Home, tmp_path: Path, description: str, cwd: str, says: str
) -> None:
    repo = make_repo(tmp_path)
    with pytest.raises(SubmitError) as refused:
        task_submit(
            home,
            description,
            Path(cwd.format(repo=repo)),
            {"model": "openai/x"},
            no_model="set one",
        )
    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_a_nul_byte_in_cwd_over_http_is_a_422_not_a_500(home: Home, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    url = serve("--port", str(free_port()), env={"SHOAL_API_TOKEN": TOKEN})
    try:
        for body in (
            {"description": "x", "cwd": f"{repo}\u0000/x"},
            {"description": "x\u0000y", "cwd": str(repo)},
        ):
            status, answer = request("POST", f"{url}/tasks", token=TOKEN, body=body)
            assert status == 422, answer
            assert "NUL byte" in answer["error"]["message"]
    finally:
        assert shoal("serve", "--stop").returncode == 0
