"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_the_examples() -> None:
    assert len(python_blocks()) == 4


def test_embedding_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(python_blocks()[0], "README embedding example", "exec"), {})
    printed = capsys.readouterr().out
    assert "resolve is not allowed there; allowed now: post_update" in printed
    assert "acknowledge" in printed
    assert (tmp_path / "complaints.db").exists()


def test_audit_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(python_blocks()[1], "README audit example", "exec"), {})
    printed = capsys.readouterr().out
    assert "verified 2 events of 1 complaints: clean" in printed
    assert (tmp_path / "seal.json").exists()
    assert (tmp_path / "case.json").exists()


def test_reports_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(python_blocks()[2], "README reports example", "exec"), {})
    printed = capsys.readouterr().out
    assert "Per owner" in printed
    assert "complaint_id,target,due_at,owner" in printed  # the at-risk table
    assert '"stage": "ACKNOWLEDGED"' in printed
    assert '"waiting": 1' in printed


def test_property_test_example_runs() -> None:
    namespace: dict[str, object] = {}
    exec(compile(python_blocks()[3], "README property example", "exec"), namespace)
    tests = [v for k, v in namespace.items() if k.startswith("test_")]
    assert len(tests) == 1
    tests[0]()  # type: ignore[operator]


def test_the_lifecycle_picture_is_the_transition_tables() -> None:
    from amends.domain.lifecycle import mermaid

    pictures = re.findall(
        r"```mermaid\n(.*?)```", README.read_text(encoding="utf-8"), re.S
    )
    assert pictures == [mermaid()]
