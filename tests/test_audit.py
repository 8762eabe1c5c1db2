"""The auditor's toolkit: point in time, snapshots, tamper evidence, bundles,
first-version fixtures and encryption at rest."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import tempfile
import threading
import unicodedata
from collections.abc import Callable
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any
from unittest.mock import patch
from uuid import UUID

import pytest
from eventsourcing.cryptography import AESCipher
from eventsourcing.utils import Environment
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import amends.infra.desk as desk_module
from amends import (
    ComplaintDesk,
    ComplaintNotFound,
    ConfigurationError,
    HistoryViolation,
    InvalidCommand,
    Seal,
    Stage,
)
from amends.audit import (
    MAX_BUNDLE_BYTES,
    MAX_SEAL_BYTES,
    CaseBundle,
    UnreadableFile,
    load_seal,
    verify_bundle,
)
from amends.domain.audit import ChainVerifier, StoredRecord
from amends.domain.values import UNPRINTABLE
from amends.infra.settings import cipher_settings, new_cipher_key
from amends.testing import Lifecycle, lifecycles

from conftest import FixedClock
from helpers import RECEIVE, RawStore, fifo, load_rows, outcome_within, walk_to

FIXTURE = Path(__file__).parent / "fixtures" / "events-v1.jsonl"
ZLIB = "eventsourcing.compressor:ZlibCompressor"
MakeDesk = Callable[..., ComplaintDesk]


@pytest.fixture
def tampered(make_shared_desk: MakeDesk) -> tuple[ComplaintDesk, RawStore, list[UUID]]:
    desk = make_shared_desk()
    ids = [walk_to(desk, Stage.RESOLVED) for _ in range(3)]
    return desk, RawStore(desk.store_url), ids


def kinds(report: Any, complaint_id: UUID) -> set[tuple[str, int | None]]:
    return {
        (f.kind, f.version) for f in report.findings if f.complaint_id == complaint_id
    }


# ---------------------------------------------------------- tamper evidence


def test_an_untouched_store_verifies_clean(tampered: Any) -> None:
    desk, _, ids = tampered
    report = desk.verify()
    assert report.ok, report.to_text()
    assert (report.complaints, report.events) == (3, 18)
    assert desk.verify(ids[0]).events == 6


def test_an_altered_payload_is_reported_with_complaint_and_version(
    tampered: Any,
) -> None:
    desk, raw, ids = tampered
    state = raw.state(ids[0], 2)
    raw.set_state(ids[0], 2, {**state, "paraphrase": "Something nobody said."})
    report = desk.verify()
    assert kinds(report, ids[0]) == {("altered", 2)}
    assert not kinds(report, ids[1])
    # A desk that has not read it before refuses to replay it (this desk keeps
    # the states it wrote in its cache, as it keeps snapshots: verify never does).
    with (
        ComplaintDesk(desk.store_url, cache_size=0) as reader,
        pytest.raises(HistoryViolation) as caught,
    ):
        reader.get(ids[0])
    assert caught.value.version == 3  # the event that recorded the old digest


def test_a_removed_event_is_reported(tampered: Any) -> None:
    desk, raw, ids = tampered
    raw.delete(ids[1], 3)
    report = desk.verify(ids[1])
    assert ("missing", 4) in kinds(report, ids[1])
    assert "version 3 missing" in str(report.findings[0])


def test_reordered_events_are_reported(tampered: Any) -> None:
    desk, raw, ids = tampered
    raw.swap(ids[2], 2, 3)
    found = kinds(desk.verify(ids[2]), ids[2])
    assert ("transition", 2) in found  # Apologized in RECEIVED
    assert any(kind == "altered" for kind, _ in found)


def test_a_transition_the_table_forbids_is_reported_even_with_a_rebuilt_chain(
    tampered: Any,
) -> None:
    """A tamperer who recomputes digests still cannot make a skip look legal."""
    desk, raw, ids = tampered
    received = raw.state(ids[0], 1)
    acknowledged = raw.state(ids[0], 2)
    apology = {
        "by": acknowledged["by"],
        "timestamp": acknowledged["timestamp"],
        "previous_digest": acknowledged["previous_digest"],
        "apology": "Sorry!",
    }
    raw.set_state(ids[0], 2, apology, topic="amends.complaint.Apologized")
    assert received
    found = kinds(desk.verify(ids[0]), ids[0])
    assert ("transition", 2) in found


def test_time_going_backwards_is_reported(tampered: Any) -> None:
    desk, raw, ids = tampered
    state = raw.state(ids[1], 4)
    raw.set_state(ids[1], 4, {**state, "timestamp": "2001-01-01T00:00:00Z"})
    found = kinds(desk.verify(ids[1]), ids[1])
    assert ("time", 4) in found
    assert ("altered", 4) in found


def test_a_seal_reveals_events_removed_from_the_end(tampered: Any) -> None:
    desk, raw, ids = tampered
    seal = desk.seal()
    assert seal.is_intact
    assert {e.complaint_id for e in seal.complaints} >= set(ids)
    raw.delete(ids[0], 6)
    assert desk.verify().ok  # without the seal, a shorter chain looks whole
    report = desk.verify(seal=seal)
    assert kinds(report, ids[0]) == {("sealed", 5)}
    assert "removed after the seal" in report.to_text()


def test_a_seal_reveals_a_rewritten_newest_event(tampered: Any) -> None:
    desk, raw, ids = tampered
    seal = desk.seal()
    state = raw.state(ids[2], 6)
    raw.set_state(ids[2], 6, {**state, "resolution": "Nothing was wrong"})
    assert desk.verify().ok  # the newest event has no successor to betray it
    assert kinds(desk.verify(seal=seal), ids[2]) == {("sealed", 6)}
    assert kinds(desk.verify(ids[2], seal=seal), ids[2]) == {("sealed", 6)}


def test_an_invalid_edit_of_the_newest_event_is_found_without_a_seal(
    tampered: Any,
) -> None:
    desk, raw, ids = tampered
    state = raw.state(ids[1], 6)
    raw.set_state(ids[1], 6, {**state, "resolution": "   "})
    report = desk.verify()
    assert kinds(report, ids[1]) == {("unreadable", 6)}
    assert "invalid Resolved (resolution)" in report.to_text()


def test_an_edited_seal_is_reported(tampered: Any, tmp_path: Path) -> None:
    desk, _, _ = tampered
    path = tmp_path / "seal.json"
    path.write_text(desk.seal().model_dump_json())
    data = json.loads(path.read_text())
    data["complaints"][0]["version"] = 1
    path.write_text(json.dumps(data))
    edited = load_seal(path)
    assert not edited.is_intact
    report = desk.verify(seal=edited)
    # Only the seal is accused: the store is not compared with an edited
    # seal (before, the untouched complaint was also reported as "sealed").
    assert [f.kind for f in report.findings] == ["seal"], report.to_text()


def test_a_deleted_complaint_is_reported_against_the_seal(tampered: Any) -> None:
    desk, raw, ids = tampered
    seal = desk.seal()
    for version in range(1, 7):
        raw.delete(ids[1], version)
    assert kinds(desk.verify(seal=seal), ids[1]) == {("sealed", None)}
    # Asked about that complaint alone: the same finding, not "not found".
    alone = desk.verify(ids[1], seal=seal)
    assert kinds(alone, ids[1]) == {("sealed", None)}
    assert "now has no events" in alone.to_text()
    with pytest.raises(ComplaintNotFound):
        desk.verify(ids[1])  # without the seal, nothing says it was there


@settings(max_examples=40, deadline=None)
@given(lifecycles(max_steps=15), st.data())
def test_any_single_edit_is_found_given_a_seal(
    lifecycle: Lifecycle, data: st.DataObject
) -> None:
    with ComplaintDesk("memory://") as desk:
        complaint_id = lifecycle.run(desk)
        seal = desk.seal()
        assert desk.verify(seal=seal).ok
        events = desk.events(complaint_id)
        version = data.draw(st.integers(1, len(events)), label="version")
        recorder = desk._app.recorder  # the in-memory rows, edited in place
        stored = recorder.select_events(complaint_id, lte=version, gt=version - 1)[0]
        payload = json.loads(stored.state)
        field = data.draw(st.sampled_from(sorted(payload)), label="field")
        payload[field] = "tampered" if payload[field] != "tampered" else "again"
        index = recorder._stored_events_index[str(complaint_id)][version]
        recorder._stored_events[index] = type(stored)(
            originator_id=stored.originator_id,
            originator_version=stored.originator_version,
            topic=stored.topic,
            state=json.dumps(payload).encode(),
        )
        report = desk.verify(seal=seal)
        assert not report.ok
        assert {f.complaint_id for f in report.findings} == {complaint_id}


def _replace_stored(
    desk: ComplaintDesk,
    complaint_id: UUID,
    version: int,
    state: Any,
    topic: str | None = None,
) -> None:
    recorder = desk._app.recorder  # the in-memory rows, edited in place
    stored = recorder.select_events(complaint_id, lte=version, gt=version - 1)[0]
    index = recorder._stored_events_index[str(complaint_id)][version]
    recorder._stored_events[index] = type(stored)(
        originator_id=stored.originator_id,
        originator_version=stored.originator_version,
        topic=topic or stored.topic,
        state=state,
    )


def _delete_stored(desk: ComplaintDesk, complaint_id: UUID, version: int) -> None:
    recorder = desk._app.recorder  # the in-memory rows, edited in place
    index = recorder._stored_events_index[str(complaint_id)].pop(version)
    del recorder._stored_events[index]
    for kept in recorder._stored_events_index.values():
        for at, position in kept.items():
            if position > index:
                kept[at] = position - 1


@settings(max_examples=60, deadline=None)
@given(lifecycles(max_steps=15), st.data())
def test_an_unreadable_event_is_the_one_finding_never_a_false_transition(
    lifecycle: Lifecycle, data: st.DataObject
) -> None:
    """One stored event that cannot be read is reported there, and nothing
    else is: the events after it are not judged against the stage before
    it. Before, the next event that moved the stage was "not allowed" in
    the stage the unreadable event had left (a lifecycle break that never
    happened)."""
    with ComplaintDesk("memory://") as desk:
        complaint_id = lifecycle.run(desk)
        events = desk.events(complaint_id)
        version = data.draw(st.integers(1, len(events)), label="version")
        _replace_stored(desk, complaint_id, version, b"\xff not json")
        report = desk.verify()
        assert [(f.kind, f.version) for f in report.findings] == [
            ("unreadable", version)
        ], report.to_text()


@pytest.mark.parametrize("damage", ["unreadable", "missing"])
def test_an_unseen_answer_may_have_ended_a_wait(damage: str) -> None:
    """Waiting on the customer, their "no" ended the wait, and later the team
    waits on them again. With the answer unreadable (or gone), verify must
    allow that it ended the wait: before, the second wait was "not allowed
    in UPDATING while waiting", a break that never happened."""
    clock = FixedClock()
    with ComplaintDesk("memory://", clock=clock) as desk:
        complaint_id = walk_to(desk, Stage.RESOLVED)
        desk.await_customer(complaint_id, by="ana", reason="Happy?")
        answer = desk.confirm_satisfaction(
            complaint_id, by="ana", satisfied=False, reason="No"
        ).version
        desk.post_update(complaint_id, by="ana", note="Looking again")
        desk.await_customer(complaint_id, by="ana", reason="Which account?")
        assert desk.verify().ok
        if damage == "unreadable":
            _replace_stored(desk, complaint_id, answer, b"\xff not json")
        else:
            _delete_stored(desk, complaint_id, answer)
        found = [(f.kind, f.version) for f in desk.verify().findings]
        expected = (
            ("unreadable", answer)
            if damage == "unreadable"
            else (
                "missing",
                answer + 1,
            )
        )
        assert found == [expected], found


def test_a_break_right_after_an_unreadable_event_is_still_found() -> None:
    """An event after one that cannot be read is judged against every stage
    the complaint can reach in one event: a second acknowledgement after an
    acknowledged complaint's unreadable event is a break whatever that event
    was. Taken for "any stage", it went unreported."""
    with ComplaintDesk("memory://") as desk:
        complaint_id = walk_to(desk, Stage.APOLOGIZED)
        desk.add_note(complaint_id, by="ana", text="later")
        recorder = desk._app.recorder
        acknowledged = recorder.select_events(complaint_id, lte=2, gt=1)[0]
        _replace_stored(desk, complaint_id, 3, b"\xff not json")
        _replace_stored(desk, complaint_id, 4, acknowledged.state, acknowledged.topic)
        found = [(f.kind, f.version) for f in desk.verify().findings]
        assert found == [("unreadable", 3), ("transition", 4)], found
        (transition,) = [f for f in desk.verify().findings if f.kind == "transition"]
        assert "any stage the complaint can be in here" in transition.detail


@settings(max_examples=60, deadline=None)
@given(lifecycles(max_steps=15), st.data())
def test_a_missing_event_is_the_one_finding_never_a_false_transition(
    lifecycle: Lifecycle, data: st.DataObject
) -> None:
    """The same for an event deleted from the middle of a chain: it is
    reported as missing, and the event after the gap is not judged against
    the stage before it."""
    with ComplaintDesk("memory://") as desk:
        complaint_id = lifecycle.run(desk)
        events = desk.events(complaint_id)
        assume(len(events) >= 3)
        version = data.draw(st.integers(2, len(events) - 1), label="version")
        _delete_stored(desk, complaint_id, version)
        report = desk.verify()
        assert [(f.kind, f.version) for f in report.findings] == [
            ("missing", version + 1)
        ], report.to_text()


# ------------------------------------------------------------ point in time


def test_get_as_of_a_moment(desk: ComplaintDesk, clock: FixedClock) -> None:
    start = clock.now
    complaint_id = desk.receive(**RECEIVE)
    clock.advance(hours=1)
    desk.acknowledge(complaint_id, by="ana", paraphrase="p")
    clock.advance(hours=1)
    desk.apologize(complaint_id, by="ana", apology="sorry")
    assert desk.get(complaint_id, as_of=start).stage is Stage.RECEIVED
    later = start + timedelta(minutes=90)
    assert desk.get(complaint_id, as_of=later).stage is Stage.ACKNOWLEDGED
    assert desk.get(complaint_id, as_of=clock.now).stage is Stage.APOLOGIZED
    with pytest.raises(ComplaintNotFound, match="received later"):
        desk.get(complaint_id, as_of=start - timedelta(seconds=1))
    with pytest.raises(InvalidCommand) as caught:
        desk.get(complaint_id, as_of=start.replace(tzinfo=None))
    assert caught.value.fields == ("as_of",)


def long_history(desk: ComplaintDesk, notes: int) -> UUID:
    complaint_id = desk.receive(**RECEIVE)
    for n in range(notes):
        desk.add_note(complaint_id, by="ana", text=f"note {n}")
    return complaint_id


def test_snapshots_are_taken_and_give_the_same_state(
    make_shared_desk: MakeDesk, clock: FixedClock
) -> None:
    desk = make_shared_desk(snapshot_every=10)
    complaint_id = long_history(desk, 34)
    plain = make_shared_desk(snapshot_every=0)
    assert desk.get(complaint_id) == plain.get(complaint_id)
    assert desk.get(complaint_id).version == 35
    snapshots = list(desk._app.snapshots.get(complaint_id))  # type: ignore[union-attr]
    assert [s.originator_version for s in snapshots] == [10, 20, 30]
    for version in (5, 10, 11, 29, 35):
        assert desk.get(complaint_id, version=version) == plain.get(
            complaint_id, version=version
        )
    assert desk.get(complaint_id, as_of=clock.now) == plain.get(complaint_id)


def test_an_unreadable_snapshot_is_ignored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    with ComplaintDesk(url, snapshot_every=5) as desk:
        complaint_id = long_history(desk, 11)
        expected = desk.get(complaint_id)
    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute("UPDATE stored_snapshots SET state = ?", (b'{"state": {}}',))
    with ComplaintDesk(url, snapshot_every=5) as desk:
        assert desk.get(complaint_id) == expected


# ------------------------------------------------------------- case bundles


def test_an_exported_case_verifies_offline(desk: ComplaintDesk, tmp_path: Path) -> None:
    complaint_id = walk_to(desk, Stage.PREVENTION_LOGGED)
    path = tmp_path / "case.json"
    bundle = desk.export_case(complaint_id, path)
    assert [e.version for e in bundle.events] == list(range(1, 9))
    assert bundle.head.digest == desk.history(complaint_id).records[-1].digest
    data = json.loads(path.read_text())
    assert data["schemas"]["amends.complaint.Received"]["class_version"] == 2
    assert "properties" in data["schemas"]["amends.complaint.Resolved"]["schema"]
    report = verify_bundle(path)
    assert report.ok, report.to_text()
    assert report.events == 8


def test_an_edited_bundle_is_reported(desk: ComplaintDesk, tmp_path: Path) -> None:
    complaint_id = walk_to(desk, Stage.RESOLVED)
    path = tmp_path / "case.json"
    desk.export_case(complaint_id, path)
    data = json.loads(path.read_text())
    data["events"][2]["payload"]["apology"] = "We apologise for nothing."
    path.write_text(json.dumps(data))
    found = {(f.kind, f.version) for f in verify_bundle(path).findings}
    assert ("altered", 3) in found  # its listed digest no longer matches
    assert ("seal", None) in found  # nor does the bundle's own digest


def test_a_bundle_or_seal_is_written_private_whole_and_new(
    desk: ComplaintDesk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`export_case(..., path)` and `seal(path)` write a new file of mode
    0600 (customer data in the clear), never over one that exists unless
    `overwrite=True`, never through a symbolic link, and never half: a
    failure while writing leaves nothing under the name."""
    import os
    import stat

    complaint_id = walk_to(desk, Stage.ACKNOWLEDGED)
    tmp_path = tmp_path / "out"  # beside the store's own file
    tmp_path.mkdir()
    case, seal = tmp_path / "case.json", tmp_path / "seal.json"
    old_umask = os.umask(0o022)
    try:
        bundle = desk.export_case(complaint_id, case)
        assert stat.S_IMODE(case.stat().st_mode) == 0o600
        sealed = desk.seal(seal)
        assert stat.S_IMODE(seal.stat().st_mode) == 0o600
    finally:
        os.umask(old_umask)
    assert CaseBundle.model_validate_json(case.read_text()) == bundle
    assert load_seal(seal) == sealed
    with pytest.raises(FileExistsError, match="exists"):
        desk.export_case(complaint_id, case)
    with pytest.raises(FileExistsError, match="exists"):
        desk.seal(seal)
    desk.add_note(complaint_id, by="ana", text="later")
    assert desk.export_case(complaint_id, case, overwrite=True).head.version == 3
    assert verify_bundle(case).events == 3
    link = tmp_path / "link.json"
    link.symlink_to(seal)
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="symbolic link"):
            desk.export_case(complaint_id, link, overwrite=overwrite)
        assert load_seal(seal) == sealed
        assert link.is_symlink()

    import amends.infra.files

    def failing(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(amends.infra.files.os, "fsync", failing)
    with pytest.raises(OSError, match="No space left"):
        desk.export_case(complaint_id, tmp_path / "half.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "case.json",
        "link.json",
        "seal.json",
    ]


def _redigested(data: dict[str, Any]) -> dict[str, Any]:
    """A bundle's JSON with every digest computed again, as anyone editing it
    could: its events' own, its head's and the whole bundle's."""
    from amends.domain.digest import stored_digest

    complaint_id = data["complaint_id"]
    for event in data["events"]:
        body = {k: v for k, v in event["payload"].items() if k != "class_version"}
        event["digest"] = stored_digest(
            event["topic"], event["class_version"], complaint_id, event["version"], body
        )
    data["head"].update(
        version=data["events"][-1]["version"], digest=data["events"][-1]["digest"]
    )
    data["digest"] = CaseBundle.model_validate({**data, "digest": ""}).content_digest()
    return data


def test_a_bundle_cut_short_with_its_digests_redone_is_caught_by_a_seal(
    desk: ComplaintDesk, tmp_path: Path
) -> None:
    """Dropping a case's newest events and computing the bundle's digests
    again leaves a bundle that checks on its own: only a seal kept apart
    tells. `verify_bundle(..., seal=)` and `amends verify-bundle --seal` check
    the bundle holds the event the seal pinned, as sealed."""
    complaint_id = walk_to(desk, Stage.RESOLVED)
    seal = desk.seal()
    path = tmp_path / "case.json"
    desk.export_case(complaint_id, path)
    assert verify_bundle(path, seal=seal).ok
    data = json.loads(path.read_text())
    data["events"].pop()
    path.write_text(json.dumps(_redigested(data)))
    assert verify_bundle(path).ok  # the bundle alone cannot tell
    found = verify_bundle(path, seal=seal).findings
    assert [(f.kind, f.version) for f in found] == [("sealed", 5)]
    assert "either events were dropped from the bundle" in found[0].detail
    # The pinned event rewritten and every digest redone: the same.
    data = json.loads(path.read_text())
    data["events"].append(dict(data["events"][-1]))
    data["events"][-1].update(version=6)
    path.write_text(json.dumps(_redigested(data)))
    seal_path = tmp_path / "seal.json"
    seal_path.write_text(seal.model_dump_json())
    kinds_found = {
        (f.kind, f.version) for f in verify_bundle(path, seal=seal_path).findings
    }
    assert ("sealed", 6) in kinds_found


def test_a_seal_taken_after_the_export_of_a_case_that_grew_is_a_finding(
    desk: ComplaintDesk, clock: FixedClock, tmp_path: Path
) -> None:
    """A bundle exported before the case's last events, checked against a
    seal taken once they were recorded, cannot be told from a bundle cut
    short and backdated: a finding that gives both readings, never a clean
    report or a refusal that blames the seal."""
    complaint_id = walk_to(desk, Stage.ACKNOWLEDGED)
    path = tmp_path / "case.json"
    desk.export_case(complaint_id, path)
    clock.advance(hours=1)
    desk.add_note(complaint_id, by="ana", text="later")
    later = desk.seal()
    found = verify_bundle(path, seal=later).findings
    assert [(f.kind, f.version) for f in found] == [("sealed", 2)]
    assert "either events were dropped from the bundle" in found[0].detail
    assert "the seal was taken after the export" in found[0].detail
    assert "its own claim" in found[0].detail


_CUT_CASE: dict[str, Any] = {}


def _cut_case() -> tuple[dict[str, Any], Any]:
    """A case of six events exported as it was sealed: the bundle's JSON
    and the seal, made once for every example."""
    if not _CUT_CASE:
        with ComplaintDesk("memory://") as desk:
            complaint_id = walk_to(desk, Stage.RESOLVED)
            seal = desk.seal()
            _CUT_CASE.update(
                bundle=desk.export_case(complaint_id).model_dump(mode="json"),
                seal=seal,
            )
    return _CUT_CASE["bundle"], _CUT_CASE["seal"]


@settings(max_examples=60, deadline=None)
@given(
    dropped=st.integers(1, 5),
    exported_at=st.datetimes(
        timezones=st.integers(-14 * 60, 14 * 60).map(
            lambda minutes: timezone(timedelta(minutes=minutes))
        )
    ),
)
def test_a_bundle_with_events_removed_never_verifies_against_a_seal_that_held_them(
    dropped: int, exported_at: Any
) -> None:
    """Whatever `exported_at` says, a bundle missing events the seal pinned
    is a `sealed` finding: the export time is the bundle's own claim. Before,
    a bundle cut short and backdated before the seal (digests redone) made
    `verify` raise, and the CLI called the auditor's seal the mistake."""
    original, seal = _cut_case()
    data = json.loads(json.dumps(original))
    del data["events"][-dropped:]
    data["exported_at"] = exported_at.isoformat()
    bundle = CaseBundle.model_validate(_redigested(data))
    report = bundle.verify(seal)
    kept = len(original["events"]) - dropped
    assert ("sealed", kept) in {(f.kind, f.version) for f in report.findings}


@settings(max_examples=40, deadline=None)
@given(index=st.integers(0, 5), listed=st.integers(-3, 20))
def test_a_listed_class_version_other_than_the_payloads_never_verifies_clean(
    index: int, listed: int
) -> None:
    """An event listed under a `class_version` its payload does not carry,
    its digest and the bundle's redone with it, is a finding: before, it
    verified clean, its listed digest no longer the one the next event's
    `previous_digest` records."""
    original, _ = _cut_case()
    data = json.loads(json.dumps(original))
    event = data["events"][index]
    assume(listed != event["payload"].get("class_version", 1))
    event["class_version"] = listed
    report = CaseBundle.model_validate(_redigested(data)).verify()
    assert ("altered", index + 1) in {(f.kind, f.version) for f in report.findings}
    if index + 1 < len(data["events"]):
        following = data["events"][index + 1]["payload"]
        assert following["previous_digest"] != event["digest"]


def test_a_bundle_or_seal_that_is_no_regular_file_is_refused_unread(
    tmp_path: Path,
) -> None:
    """A pipe (or a device: /dev/zero) is refused before anything is read.
    Before, a pipe with no writer waited for ever, /dev/zero was read until
    memory ran out."""
    with fifo(tmp_path / "pipe") as pipe:
        report = outcome_within(10, lambda: verify_bundle(pipe))
        assert [f.detail for f in report.findings] == [
            f"{pipe} is not a readable case bundle: not a regular file (a pipe): "
            "a bundle is read from a regular file only"
        ]
        refused = outcome_within(10, lambda: load_seal(pipe))
        assert isinstance(refused, UnreadableFile), refused
        assert "not a regular file (a pipe)" in str(refused)


def test_a_bundle_or_seal_above_the_limit_is_refused_unread(tmp_path: Path) -> None:
    """A file larger than any case bundle amends writes (a case of 10,000
    events of the longest notes exports to 54 MB) is refused by its size,
    unread. Before, any size was read whole: 200 MB took 700 MB of memory."""
    bundle_limit, seal_limit = MAX_BUNDLE_BYTES, MAX_SEAL_BYTES
    path = tmp_path / "huge.json"
    with path.open("wb") as file:
        file.truncate(bundle_limit + 1)  # sparse: no disk, no memory
    (finding,) = verify_bundle(path).findings
    assert finding.detail == (
        f"{path} is not a readable case bundle: {bundle_limit + 1} bytes, "
        "above the 64 MiB a bundle is read up to"
    )
    with path.open("r+b") as file:
        file.truncate(seal_limit + 1)
    with pytest.raises(UnreadableFile, match="above the 256 MiB a seal is read up"):
        load_seal(path)


@pytest.mark.parametrize(
    "edit",
    ["duplicate key", "unknown field", "head of another case", "exported too early"],
)
def test_a_bundle_that_reads_one_way_to_amends_and_another_elsewhere_is_refused(
    desk: ComplaintDesk, tmp_path: Path, edit: str
) -> None:
    """What the bundle's digest does not cover cannot be left to say
    anything: a key named twice (amends read the last value, SQLite's
    `json_extract` the first: the bundle's digest stayed the same), a field
    no model defines, a head naming another complaint, or an export time
    before the case's last event. Before, each verified clean."""
    complaint_id = walk_to(desk, Stage.RESOLVED)
    path = tmp_path / "case.json"
    desk.export_case(complaint_id, path)
    text = path.read_text()
    data = json.loads(text)
    if edit == "duplicate key":
        text = text.replace(
            '"apology": ', '"apology": "We owe you nothing.", "apology": ', 1
        )
    elif edit == "unknown field":
        data["approved_by_compliance"] = True
        text = json.dumps(data)
    elif edit == "head of another case":
        data["head"]["complaint_id"] = str(walk_to(desk, Stage.RECEIVED))
        text = json.dumps(_redigested(data) | {"head": data["head"]})
    else:
        data["exported_at"] = "2000-01-01T00:00:00+00:00"
        text = json.dumps(_redigested(data))
    path.write_text(text)
    report = verify_bundle(path)
    assert not report.ok
    detail = {
        "duplicate key": "names 'apology' twice",
        "unknown field": "approved_by_compliance: Extra inputs are not permitted",
        "head of another case": "its head names complaint",
        "exported too early": "exported at 2000-01-01T00:00:00+00:00, before",
    }[edit]
    assert any(detail in f.detail for f in report.findings), report.to_text()


@pytest.mark.parametrize("written", ["upper case", "with dashes"])
def test_an_id_rewritten_in_another_form_is_named_not_taken_for_a_reorder(
    tmp_path: Path, written: str
) -> None:
    """The same complaint id stored another way sorts apart from its other
    rows: verify reported versions missing, twice and out of order, none of
    it true. Now that row is the finding, and the gap it leaves."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    with ComplaintDesk(url) as desk:
        complaint_id = walk_to(desk, Stage.PLAN_COMMITTED)
    edited = complaint_id.hex.upper() if written == "upper case" else str(complaint_id)
    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute(
            "UPDATE stored_events SET originator_id = ? WHERE originator_id = ? "
            "AND originator_version = 2",
            (edited, complaint_id.hex),
        )
    with ComplaintDesk(url) as desk:
        found = desk.verify().findings
    assert sorted((f.version or 0, f.kind) for f in found) == [
        (2, "unreadable"),
        (3, "missing"),
    ], found
    assert {f.complaint_id for f in found} == {complaint_id}
    assert any(f"stored as {edited!r}" in f.detail for f in found)


def test_an_export_of_a_case_with_an_unreadable_event_names_that_event(
    tmp_path: Path,
) -> None:
    """A bundle holds events as stored; one with no JSON to hold refuses the
    export, naming its version. Before, the message named the case's last
    version (3 here), an event that was fine."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    with ComplaintDesk(url) as desk:
        complaint_id = walk_to(desk, Stage.APOLOGIZED)
    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute(
            "UPDATE stored_events SET state = ? WHERE originator_id = ? "
            "AND originator_version = 2",
            (b"\xff not json", complaint_id.hex),
        )
    with ComplaintDesk(url) as desk:
        with pytest.raises(HistoryViolation) as refused:
            desk.export_case(complaint_id, tmp_path / "case.json")
        assert refused.value.version == 2
        assert "version 2: cannot be read" in str(refused.value)
    assert not (tmp_path / "case.json").exists()


def test_a_file_that_is_no_bundle_is_one_clear_finding(tmp_path: Path) -> None:
    path = tmp_path / "nonsense.json"
    path.write_text("{not json")
    report = verify_bundle(path)
    assert [f.kind for f in report.findings] == ["unreadable"]
    assert "not a readable case bundle" in report.to_text()


# ------------------------------------------------ first-version fixtures


def load_fixture(store_url: str) -> set[UUID]:
    return load_rows(store_url, FIXTURE)


def test_first_version_rows_load_verify_and_carry_on(
    shared_store_url: str, clock: FixedClock
) -> None:
    ids = load_fixture(shared_store_url)
    with ComplaintDesk(shared_store_url, clock=clock) as desk:
        for complaint_id in ids:
            assert desk.verify(complaint_id).ok
        views = {desk.get(i).stage: desk.get(i) for i in ids}
        assert set(views) == {
            Stage.PREVENTION_LOGGED,
            Stage.UPDATING,
            Stage.RECEIVED,
        }
        closed = views[Stage.PREVENTION_LOGGED]
        assert closed.reopen_count == 1
        assert closed.owner == "ben"
        assert closed.preferred_contact == closed.channel == "phone"  # upcast
        assert closed.external_ref == "CRM-1001"
        # New events chain onto the old ones.
        updating = views[Stage.UPDATING]
        desk.resolve(
            updating.id, by="chidi", resolution="Replaced", explanation="Packaging"
        )
        assert desk.verify(updating.id).ok
        assert desk.get(updating.id).stage is Stage.RESOLVED
        received_again = desk.receive(**RECEIVE, external_ref="CRM-1001")
        assert received_again == closed.id
        # ...and project into the report views like any other history.
        backlog = desk.reports.backlog()
        assert backlog.reached[Stage.RECEIVED] == 3
        assert backlog.reached[Stage.PREVENTION_LOGGED] == 1
        assert backlog.satisfied_first == {"yes": 0, "no": 1, "unanswered": 1}
        assert backlog.satisfied_after_reopen == {"yes": 1, "no": 0, "unanswered": 0}
        assert backlog.gesture_totals == {"EUR": "12.50"}
        ownership = {row.owner: row for row in desk.reports.ownership().owners}
        assert ownership["ben"].handed_in == 1
        assert ownership["ben"].resolved_while_owner == 1


def test_first_version_rows_keep_their_stored_form(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v1.db'}"
    ids = load_fixture(url)
    with ComplaintDesk(url) as desk:
        for complaint_id in ids:
            first = desk.history(complaint_id).records[0]
            assert first.payload["preferred_contact"] == first.payload["channel"]
            bundle = desk.export_case(complaint_id)
            assert bundle.events[0].class_version == 1
            assert "preferred_contact" not in bundle.events[0].payload
            assert bundle.verify().ok


# -------------------------------------------------------------- encryption


def test_an_encrypted_store_holds_no_plaintext_personal_data(tmp_path: Path) -> None:
    key = new_cipher_key()
    path = tmp_path / "secret.db"
    customer = "Zoë Quackenbush <zoe.quackenbush@example.org>"
    with ComplaintDesk(f"sqlite:///{path}", cipher_key=key, snapshot_every=2) as desk:
        complaint_id = desk.receive(**{**RECEIVE, "customer": customer})
        desk.add_note(complaint_id, by="ana", text="Called zoe.quackenbush@example.org")
        desk.add_note(complaint_id, by="ana", text="Quackenbush again")
        assert desk.get(complaint_id).customer == customer
        assert desk.verify().ok
        # The report views, in the same file, hold no personal data either.
        assert desk.reports.backlog().reached[Stage.RECEIVED] == 1
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"Quackenbush" not in raw
    assert b"quackenbush" not in raw
    assert b"example.org" not in raw
    with ComplaintDesk(f"sqlite:///{path}", cipher_key=key) as desk:
        assert desk.get(complaint_id).customer == customer


def test_a_wrong_or_missing_key_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "secret.db"
    with ComplaintDesk(f"sqlite:///{path}", cipher_key=new_cipher_key()) as desk:
        complaint_id = desk.receive(**RECEIVE)
    wrong = ComplaintDesk(f"sqlite:///{path}", cipher_key=new_cipher_key())
    with wrong, pytest.raises(ConfigurationError, match="cipher key does not decrypt"):
        wrong.get(complaint_id)
    # No key is a setting to fix too (exit 2): before, each event read was
    # "not JSON", a break in the record (verify listed every one, exit 3).
    missing = ComplaintDesk(f"sqlite:///{path}")
    with missing:
        for read in (
            lambda: missing.get(complaint_id),
            missing.verify,
            missing.seal,
            lambda: missing.export_case(complaint_id),
            lambda: missing.history(complaint_id),
            missing.reports.backlog,
            # `project`, `project --rebuild` (before it drops the views) and
            # `project --follow`: exit 3, "cannot read this stored event".
            missing.reports.catch_up,
            missing.reports.rebuild,
            lambda: missing.reports.follow(threading.Event()),
        ):
            with pytest.raises(ConfigurationError, match="events are encrypted: set"):
                read()


def test_one_altered_event_of_an_encrypted_store_is_named_not_the_key(
    tmp_path: Path,
) -> None:
    """An encrypted event changed in the file fails to decrypt. With the
    store's own key (its other events decrypt), that event is unreadable,
    named by complaint and version; before, verify, show, seal and export all
    stopped with "the cipher key does not decrypt this store's events". The
    store's first and newest events damaged are no exception: any of the
    first and newest few that decrypts says the key fits."""
    path = tmp_path / "secret.db"
    key = new_cipher_key()
    with ComplaintDesk(f"sqlite:///{path}", cipher_key=key) as desk:
        first = walk_to(desk, Stage.APOLOGIZED)
        second = walk_to(desk, Stage.APOLOGIZED)
    with sqlite3.connect(path) as db:
        for complaint_id, version in ((second, 2), (first, 1), (second, 3)):
            (state,) = db.execute(
                "SELECT state FROM stored_events WHERE originator_id = ? "
                "AND originator_version = ?",
                (complaint_id.hex, version),
            ).fetchone()
            flipped = bytes([state[0], state[1] ^ 1]) + state[2:]
            db.execute(
                "UPDATE stored_events SET state = ? WHERE originator_id = ? "
                "AND originator_version = ?",
                (flipped, complaint_id.hex, version),
            )
    with ComplaintDesk(f"sqlite:///{path}", cipher_key=key) as desk:
        report = desk.verify()
        assert {(f.complaint_id, f.version, f.kind) for f in report.findings} == {
            (second, 2, "unreadable"),
            (first, 1, "unreadable"),
            (second, 3, "unreadable"),  # the newest: a seal would pin it
        }, report.to_text()
        assert "does not decrypt with the store's key" in report.findings[0].detail
        with pytest.raises(HistoryViolation, match="version 2"):
            desk.get(second)


def test_an_event_that_does_not_decompress_is_named_not_a_crash(
    shared_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the library's compression on, a stored payload that does not
    decompress is that event's break, as one that does not parse: before,
    zlib's error stopped verify (and every read of the complaint)."""
    monkeypatch.setattr(
        desk_module,
        "cipher_settings",
        lambda key: {**cipher_settings(key), "COMPRESSOR_TOPIC": ZLIB},
    )
    with ComplaintDesk(shared_store_url) as desk:
        whole = desk.receive(**RECEIVE)
        damaged = desk.receive(**RECEIVE)
    RawStore(shared_store_url).set_state(damaged, 1, b"\x00\x11\x22\x33")
    with ComplaintDesk(shared_store_url) as desk:
        report = desk.verify()
        assert [(f.complaint_id, f.version, f.kind) for f in report.findings] == [
            (damaged, 1, "unreadable")
        ], report.to_text()
        assert "does not decompress" in report.findings[0].detail
        assert desk.get(whole).customer == RECEIVE["customer"]
        with pytest.raises(HistoryViolation, match="does not decompress"):
            desk.get(damaged)


@pytest.mark.parametrize("compressed", [False, True], ids=["", "compressed"])
@pytest.mark.parametrize(
    ("written_with", "opened_with", "said"),
    [
        ("key", "none", "are encrypted: set AMENDS_CIPHER_KEY"),
        ("key", "other", "cipher key does not decrypt"),
        ("none", "key", "are not encrypted: open it without a cipher key"),
    ],
)
def test_no_complaint_is_recorded_under_a_key_that_does_not_fit_the_store(
    shared_store_url: str,
    written_with: str,
    opened_with: str,
    said: str,
    compressed: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A process that forgot AMENDS_CIPHER_KEY, or has another key, or has a
    key for a plain store, receives a new complaint: it reads nothing first,
    so it used to be recorded, in the open or under the wrong key, and then
    every report, seal and verify of the store failed on it. It is refused
    (exit 2 from the command line), nothing is recorded, and the store's
    own reports, seal and verify stay whole; so is an import. So too with
    the library's compression on (the mapper decompresses what it decrypts):
    an encrypted payload that does not decompress was a zlib.error, not a
    refusal, and a plain compressed one did not look plain."""
    if compressed:
        monkeypatch.setattr(
            desk_module,
            "cipher_settings",
            lambda key: {**cipher_settings(key), "COMPRESSOR_TOPIC": ZLIB},
        )
    keys = {"key": new_cipher_key(), "other": new_cipher_key(), "none": None}
    url = shared_store_url
    with ComplaintDesk(url, cipher_key=keys[written_with]) as desk:
        complaint_id = desk.receive(**RECEIVE)
        before = desk.last_position()
    if written_with == "none":
        stored = RawStore(url).stored_state(complaint_id, 1)
        assert stored.startswith(b"{") is not compressed
    with ComplaintDesk(url, cipher_key=keys[opened_with]) as misfit:
        with pytest.raises(ConfigurationError, match=said):
            misfit.receive(**{**RECEIVE, "customer": "Secret Person"})
        with pytest.raises(ConfigurationError, match=said):
            misfit.write_context()  # what an import writes with
        # Reading, as everywhere: a wrong or missing key is named as the
        # configuration's fault, not the history's (exit 2, not 3).
        with pytest.raises(ConfigurationError, match="AMENDS_CIPHER_KEY"):
            misfit.reports.backlog()
    with ComplaintDesk(url, cipher_key=keys[written_with]) as desk:
        assert desk.last_position() == before
        assert desk.verify().ok
        desk.seal()
        assert desk.reports.backlog().reached[Stage.RECEIVED] == 1


def test_a_desk_that_found_the_store_empty_checks_its_key_again(
    tmp_path: Path,
) -> None:
    """Only a stored event says which key fits a store: a desk without a key
    that met the store empty (an import's dry run) must not write in the
    open once another process has written encrypted events."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with ComplaintDesk(url) as keyless:
        keyless.write_context()  # the store is empty: nothing to say yet
        with ComplaintDesk(url, cipher_key=new_cipher_key()) as keyed:
            keyed.receive(**RECEIVE)
        with pytest.raises(ConfigurationError, match="are encrypted"):
            keyless.receive(**RECEIVE)


def encrypted_beginning_with(prefix: bytes, plaintext: bytes, key: str) -> bytes:
    """`plaintext` encrypted under `key` by the library's own AES-GCM cipher,
    with a nonce chosen to begin with `prefix`: what the cipher writes, at
    random, about once in 256 events for a one-byte prefix."""
    cipher = AESCipher(Environment(env={"CIPHER_KEY": key}))

    def nonce(size: int) -> bytes:
        return prefix + os.urandom(size - len(prefix))

    with patch.object(AESCipher, "random_bytes", staticmethod(nonce)):
        sealed = cipher.encrypt(plaintext)
    assert sealed.startswith(prefix)
    assert cipher.decrypt(sealed) == plaintext
    return sealed


def encrypt_again_beginning_with(
    prefix: bytes, url: str, key: str, complaint_id: UUID, version: int
) -> None:
    """The stored event encrypted afresh, with the same payload and key,
    into a ciphertext that begins with `prefix`."""
    raw = RawStore(url)
    cipher = AESCipher(Environment(env={"CIPHER_KEY": key}))
    plaintext = cipher.decrypt(raw.stored_state(complaint_id, version))
    raw.set_state(
        complaint_id, version, encrypted_beginning_with(prefix, plaintext, key)
    )


@pytest.mark.parametrize("events", [1, 7])
def test_an_encrypted_event_that_begins_as_json_does_lets_no_keyless_desk_write(
    shared_store_url: str, events: int
) -> None:
    """AES-GCM output begins with a random nonce, so about one encrypted
    event in 256 begins with "{". A desk without the key took it for plain
    JSON, damaged, and so for a sign that its lack of a key fitted the
    store: it received the complaint and stored the customer's name in the
    open among the encrypted events (about one encrypted store in 25 had
    such an event among its first five). Only an event that decodes says
    the key fits: here the store's first event, and for one event its only
    one, begins with "{", and the desk without the key is still refused."""
    url, key = shared_store_url, new_cipher_key()
    with ComplaintDesk(url, cipher_key=key) as desk:
        complaint_id = desk.receive(**RECEIVE)
        for _ in range(events - 1):
            desk.add_note(complaint_id, by="ana", text="Called back")
        before = desk.last_position()
    encrypt_again_beginning_with(b"{", url, key, complaint_id, 1)
    with ComplaintDesk(url) as keyless:
        with pytest.raises(ConfigurationError, match="set AMENDS_CIPHER_KEY"):
            keyless.receive(**{**RECEIVE, "customer": "Secret Person"})
        with pytest.raises(ConfigurationError, match="set AMENDS_CIPHER_KEY"):
            keyless.write_context()  # what an import writes with
    with ComplaintDesk(url, cipher_key=key) as desk:
        assert desk.last_position() == before
        # The rewritten event is the same payload, encrypted as the cipher
        # might have: the store is whole, with its key.
        assert desk.verify().ok
        assert desk.get(complaint_id).customer == RECEIVE["customer"]


def test_a_plain_store_damaged_wherever_the_key_check_looks_is_still_verified(
    shared_store_url: str,
) -> None:
    """Every event the key check reads is plain JSON, damaged: UTF-8 text
    that begins as an object does, which ciphertext is about never. The
    store is plain, and verify() names each damaged row; refused as perhaps
    encrypted, such a store could not be verified at all."""
    url = shared_store_url
    with ComplaintDesk(url) as desk:
        complaint_id = desk.receive(**RECEIVE)
        desk.add_note(complaint_id, by="ana", text="Called back")
    raw = RawStore(url)
    for version in (1, 2):
        raw.set_state(complaint_id, version, b'{"broken')
    with ComplaintDesk(url) as keyless:
        report = keyless.verify()
    assert not report.ok
    assert len(report.findings) == 2
    assert all("unreadable" in str(finding) for finding in report.findings)


@settings(max_examples=20, deadline=None)
@given(
    events=st.integers(1, 13),
    prefix=st.sampled_from([b"{", b" {", b"\n\t{"]),
    data=st.data(),
)
def test_a_desk_without_the_key_never_writes_among_encrypted_events(
    events: int, prefix: bytes, data: st.DataObject
) -> None:
    """Whichever of a store's events happen to begin as JSON does (after
    white space, as a plain payload might), a desk without the key neither
    writes to an encrypted store nor reads it."""
    begin_as_json = data.draw(st.sets(st.integers(1, events), min_size=1))
    key = new_cipher_key()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'store.db'}"
        with ComplaintDesk(url, cipher_key=key, clock=FixedClock()) as desk:
            complaint_id = desk.receive(**RECEIVE)
            for _ in range(events - 1):
                desk.add_note(complaint_id, by="ana", text="Called back")
            before = desk.last_position()
        for version in sorted(begin_as_json):
            encrypt_again_beginning_with(prefix, url, key, complaint_id, version)
        with ComplaintDesk(url, clock=FixedClock()) as keyless:
            with pytest.raises(ConfigurationError, match="AMENDS_CIPHER_KEY"):
                keyless.receive(**{**RECEIVE, "customer": "Secret Person"})
            with pytest.raises(ConfigurationError, match="AMENDS_CIPHER_KEY"):
                keyless.get(complaint_id)
        with ComplaintDesk(url, cipher_key=key) as desk:
            assert desk.last_position() == before


def test_the_key_comes_from_the_environment_and_is_checked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AMENDS_CIPHER_KEY", "not base64!")
    with pytest.raises(ConfigurationError, match="keygen"):
        ComplaintDesk(f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.setenv("AMENDS_CIPHER_KEY", new_cipher_key())
    with ComplaintDesk(f"sqlite:///{tmp_path / 'x.db'}") as desk:
        complaint_id = desk.receive(**RECEIVE)
    assert b"Jo Smith" not in (tmp_path / "x.db").read_bytes()
    monkeypatch.delenv("AMENDS_CIPHER_KEY")
    keyless = ComplaintDesk(f"sqlite:///{tmp_path / 'x.db'}")
    with keyless, pytest.raises(ConfigurationError, match="are encrypted"):
        keyless.get(complaint_id)


@pytest.mark.parametrize("blank", ["", "  ", "\n"])
def test_a_blank_cipher_key_is_refused_not_taken_for_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, blank: str
) -> None:
    """A blank key is refused, not taken for unset: as the variable it was,
    but `cipher_key=""` (say `os.environ.get("VAULT_KEY", "")`, the secret
    missing) turned encryption off even with AMENDS_CIPHER_KEY set, and the
    customer's name was stored in the clear. None still means the variable."""
    monkeypatch.setenv("AMENDS_CIPHER_KEY", new_cipher_key())
    path = tmp_path / "blank.db"
    with pytest.raises(ConfigurationError, match="cipher_key= is blank"):
        ComplaintDesk(f"sqlite:///{path}", cipher_key=blank)
    assert not path.exists()
    with ComplaintDesk(f"sqlite:///{path}", cipher_key=None) as desk:
        desk.receive(**RECEIVE)
    assert b"Jo Smith" not in path.read_bytes()


@pytest.mark.parametrize("encoded", [True, False], ids=["base64", "raw"])
def test_a_cipher_key_given_as_bytes_is_refused_naming_the_type(
    tmp_path: Path, encoded: bool
) -> None:
    """The key is the text keygen prints. Given as bytes (its base64, or the
    raw key, which could not be told apart) it failed as an AttributeError
    ('bytes' object has no attribute 'encode'), a bug, not a setting to fix."""
    key = new_cipher_key()
    given = key.encode() if encoded else base64.b64decode(key)
    path = tmp_path / "bytes.db"
    with pytest.raises(ConfigurationError, match=r"as text .*not bytes"):
        ComplaintDesk(f"sqlite:///{path}", cipher_key=given)  # type: ignore[arg-type]
    assert not path.exists()


def test_seals_round_trip_through_json(desk: ComplaintDesk) -> None:
    walk_to(desk, Stage.ACKNOWLEDGED)
    seal = desk.seal()
    again = Seal.model_validate_json(seal.model_dump_json())
    assert again == seal
    assert again.is_intact


def test_the_whole_store_scan_pages_across_complaints(
    tampered: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify() reads the store in keyset pages; no page boundary loses a row."""
    import amends.infra.store as store

    desk, raw, ids = tampered
    monkeypatch.setattr(store, "SCAN_BATCH", 4)
    report = desk.verify()
    assert (report.complaints, report.events, report.ok) == (3, 18, True)
    raw.delete(ids[2], 4)
    assert ("missing", 5) in kinds(desk.verify(), ids[2])


@settings(max_examples=60, deadline=None)
@given(
    version=st.integers(1, 3),
    key=st.text(min_size=1, max_size=8),
    topic=st.one_of(st.none(), st.text(max_size=8)),
)
def test_verify_text_never_contains_an_unprintable_character(
    version: int, key: str, topic: str | None
) -> None:
    """A finding may quote what a stored row holds (a field its payload
    should not have, a topic no event has): `verify` and `verify-bundle`
    print each on one line with every `UNPRINTABLE` character escaped, so a
    right-to-left override or a line break there cannot rewrite the report
    on a terminal."""
    with ComplaintDesk("memory://", clock=FixedClock()) as desk:
        complaint_id = desk.receive(**RECEIVE)
        desk.add_note(complaint_id, by="ana", text="n")
        desk.add_note(complaint_id, by="ana", text="n")
        events = desk.events(complaint_id)
    records = [
        StoredRecord(complaint_id, e.originator_version, e.topic, e.payload())
        for e in events
    ]
    edited = records[version - 1]
    assert edited.payload is not None
    assume(key not in edited.payload)
    records[version - 1] = StoredRecord(
        complaint_id,
        version,
        edited.topic if topic is None else topic,
        {**edited.payload, key: 1},
    )
    verifier = ChainVerifier()
    verifier.check(records)
    report = verifier.report()
    assert not report.ok
    text = report.to_text()
    assert text.count("\n") == len(text.splitlines()) == 1 + len(report.findings)
    for line in text.split("\n"):
        assert not any(unicodedata.category(ch) in UNPRINTABLE for ch in line), line
