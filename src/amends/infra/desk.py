"""`ComplaintDesk`: the service an embedding team calls; transactions begin here.

Each method validates its arguments into a command, reads the complaint, asks
the pure domain to decide, and saves the events in one write. A write that
loses an optimistic-concurrency race is decided again on the fresh state, so a
command that is still valid is not lost and one that no longer fits is refused.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import groupby
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, Self, TypeVar
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from eventsourcing.persistence import PersistenceError, RecordConflictError, StoredEvent
from pydantic import TypeAdapter, ValidationError

from amends.domain import commands as c
from amends.domain.audit import (
    CaseBundle,
    ChainVerifier,
    Seal,
    SealEntry,
    StoredRecord,
    VerificationReport,
)
from amends.domain.complaint import Complaint, decide, evolve
from amends.domain.digest import payload_digest
from amends.domain.errors import (
    ComplaintNotFound,
    ConcurrencyConflict,
    FieldProblem,
    HistoryViolation,
    InvalidCommand,
    first_line,
    stored_version,
)
from amends.domain.events import ComplaintEvent
from amends.domain.history import CaseHistory, history_of
from amends.domain.sla import PolicySchedule, SlaPolicy
from amends.domain.stages import Severity
from amends.domain.values import FIRST_YEAR, LAST_YEAR, recordable
from amends.infra.errors import (
    ConfigurationError,
    DeskClosed,
    StoreUnavailable,
    names_a_missing_schema,
    names_no_database,
)
from amends.infra.files import write_private
from amends.infra.inflight import InFlight, counted
from amends.infra.mapper import ComplaintSnapshot, PydanticMapper, UnreadableRecord
from amends.infra.reporting import (
    ReportDesk,
    StoreFeed,
    policy_schedule,
    resolve_views_url,
    store_listener,
    views_engine,
)
from amends.infra.settings import (
    CIPHER_KEY_VARIABLE,
    POSTGRES_MODULE,
    cipher_settings,
    fork_workers,
    redacted_url,
    resolve_store_url,
    store_settings,
)
from amends.infra.store import (
    EventStoreApplication,
    MalformedRow,
    complaint_ids,
    stored_events_in_order,
    timed_out_on_the_pool,
    why_no_connection,
)
from amends.projections.reports import ReportQueries
from amends.projections.runner import ProjectionRunner

logger = logging.getLogger("amends")

Clock = Callable[[], datetime]

EXTERNAL_REF_NAMESPACE = uuid5(NAMESPACE_URL, "https://amends.dev/external-ref")
"""Complaint ids for `external_ref` intake are uuid5(this, ref): stable forever."""

DEFAULT_MAX_ATTEMPTS = 5
RACE_BACKOFF = 0.005
"""Seconds: after a command loses a race for its complaint, the desk waits a
random time up to this long before deciding it again, and up to twice as long
after each further loss (at most 75 ms in all, with five attempts). Retried
at once, writers contending for one complaint met again: four threads adding
100 notes each to one complaint on PostgreSQL lost 98 to 109 of their 400
commands after five attempts; waiting so, 27 to 44 (1 ms: 53 to 76)."""
DEFAULT_SNAPSHOT_EVERY = 100
DEFAULT_CACHE_SIZE = 1_000


class ComplaintCache:
    """The latest known state of recently used complaints (least recent out).

    States are immutable, so sharing them is safe. A cached state was a true
    prefix of the stored history when it was put, but the store can move
    under it: a backup restored in place takes events away, and others may
    be written at the same versions since. So the desk uses a cached state
    only after finding its head event still stored as it was (same version,
    same digest: the chain makes that the whole history up to it), then
    fast-forwards it by the newer events; the cache saves reading old
    events, never correctness.
    """

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("cache_size must be 0 (no cache) or more")
        self._size = size
        self._states: OrderedDict[UUID, Complaint] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, complaint_id: UUID) -> Complaint | None:
        with self._lock:
            state = self._states.get(complaint_id)
            if state is not None:
                self._states.move_to_end(complaint_id)
            return state

    def put(self, state: Complaint) -> None:
        if not self._size:
            return
        with self._lock:
            known = self._states.get(state.id)
            if known is not None and known.version > state.version:
                return  # a newer state arrived meanwhile
            self._states[state.id] = state
            self._states.move_to_end(state.id)
            while len(self._states) > self._size:
                self._states.popitem(last=False)

    def discard(self, state: Complaint) -> None:
        """Forget `state`, if it is still the one cached for its complaint
        (a newer one put meanwhile stays): `put` keeps the newest version,
        so a stale state must go before an older, true one can come in."""
        with self._lock:
            if self._states.get(state.id) is state:
                del self._states[state.id]


DEFAULT_CLOCK_SKEW = timedelta(minutes=5)
MAX_CLOCK_SKEW = timedelta(days=1)
"""How far ahead of the clock an `at` may ever be allowed to lie: clocks that
disagree by more than a day are a fault to mend, not to absorb."""
_MAX_VERSION = 2**63 - 1

TCommand = TypeVar("TCommand", bound=c.Command)
_UUID = TypeAdapter(UUID)


def utc_now() -> datetime:
    """The default clock. The domain never calls it; only the desk does."""
    return datetime.now(UTC)


def _in_utc(clock: Clock) -> Clock:
    """`clock`, its readings in UTC, a naive one refused by name.

    Reports cut days and weeks at UTC midnight and commands store UTC: a
    clock in another zone would move a complaint across an age bucket's edge
    (its local date is not the UTC date every evening in America). A naive
    reading is no instant; refused here, it is named as the clock's fault,
    not as a command's `at` the caller never passed."""

    def now() -> datetime:
        reading = clock()
        if not isinstance(reading, datetime):
            raise ConfigurationError(
                f"the desk's clock returned {type(reading).__name__} "
                f"({str(reading)[:60]!r}), not a datetime: it must return an aware "
                "one, such as datetime.now(UTC)"
            )
        if reading.tzinfo is None or reading.utcoffset() is None:
            raise ConfigurationError(
                f"the desk's clock returned a naive datetime ({reading.isoformat()}): "
                "it must return an aware one, such as datetime.now(UTC)"
            )
        return reading.astimezone(UTC)

    return now


@dataclass(frozen=True)
class WriteContext:
    """A desk's store and the settings its writes follow (`write_context`)."""

    app: EventStoreApplication
    mapper: PydanticMapper
    clock: Clock
    clock_skew: timedelta
    snapshot_every: int


KEY_PROBES = 5
"""Events at each end of the store a desk tries to read before it calls its
cipher key (or lack of one) wrong: one that decodes says the key fits."""

REBUILD_WORKERS = 4
"""Processes at most that fold a large rebuild (one per core; see ADR 0008)."""


class ComplaintDesk:
    """Receives complaints and walks them through their lifecycle.

    `store_url`: `memory://`, `sqlite:///path/file.db` or
    `postgresql://user@host:port/db`; by default `AMENDS_STORE_URL`, else
    `sqlite:///amends.db`. `clock` supplies `at` when a command omits it.
    `max_attempts` bounds how often a command lost to a concurrent write is
    decided again before `ConcurrencyConflict`. `clock_skew` is how far ahead
    of the clock an explicit `at` may lie (history may be backfilled, not
    written in advance). `cipher_key` (else `AMENDS_CIPHER_KEY`) encrypts
    every stored payload: the key as text, as `python -m amends keygen`
    prints it (blank, or bytes, is refused, not taken for no key). Every
    `snapshot_every` events a snapshot of the complaint is stored, so
    reading a long history stays fast (0: never).
    The latest states of `cache_size` recently used complaints stay in memory
    (0: none), so a command reads only the events newer than those.
    `views_url` (else `AMENDS_VIEWS_URL`, else the store's own database) holds
    the report views; `sla_policies` (a preset name, a policy, or a schedule
    of policies in force from given dates) measures the SLA.
    """

    def __init__(
        self,
        store_url: str | None = None,
        *,
        clock: Clock = utc_now,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
        cipher_key: str | None = None,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        cache_size: int = DEFAULT_CACHE_SIZE,
        views_url: str | None = None,
        sla_policies: PolicySchedule | SlaPolicy | str | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if snapshot_every < 0:
            raise ValueError("snapshot_every must be 0 (never) or more")
        if not isinstance(clock_skew, timedelta) or not (
            timedelta(0) <= clock_skew <= MAX_CLOCK_SKEW
        ):
            raise ValueError(
                "clock_skew must be a timedelta from zero to one day, not "
                f"{clock_skew!r}"
            )
        self.store_url = resolve_store_url(store_url)
        self._in_flight = InFlight(
            f"{self!r} is closed: open a new ComplaintDesk",
            # Every read and write, the reports' included, checks the key.
            on_entry=self._check_cipher,
        )
        self._clock = _in_utc(clock)
        self._max_attempts = max_attempts
        self._clock_skew = clock_skew
        self._snapshot_every = snapshot_every
        self._cache = ComplaintCache(cache_size)
        self.retries = 0
        """How many writes lost a race and were decided again (for drills, metrics)."""
        settings = {
            **store_settings(self.store_url),
            **cipher_settings(cipher_key),
            "IS_SNAPSHOTTING_ENABLED": "y",
        }
        self._policies = policy_schedule(sla_policies)
        # Made now, though it connects only when a report is asked for: a
        # views URL that cannot work is refused here, not at the first report.
        self._views_url = resolve_views_url(self.store_url, views_url)
        self._views = views_engine(self._views_url)
        try:
            if settings["PERSISTENCE_MODULE"] == POSTGRES_MODULE:
                _reachable(self.store_url, settings)
            with store_errors(self.store_url):
                self._open_app: EventStoreApplication | None = EventStoreApplication(
                    settings
                )
        except BaseException:
            self._views.dispose()
            raise
        mapper = self._app.mapper
        assert isinstance(mapper, PydanticMapper)
        self._mapper = mapper
        self._reports: ReportDesk | None = None
        self._cipher_fits = False
        """Whether one of the store's first or newest events was found to
        decode with this desk's cipher key, or lack of one (`_check_cipher`)."""
        database = settings.get("SQLITE_DBNAME")
        self._store_file = (
            None
            if database is None or database == ":memory:"
            else Path(database).absolute()
        )
        self._store_file_id = self._file_id()
        """The SQLite store file's device and inode as opened (None: not a file)."""

    def write_context(self) -> WriteContext:
        """What a bulk writer needs to write as this desk writes, for
        `amends.infra.importer`: the same store, mapper (and cipher), clock,
        tolerance for clock skew and snapshot interval."""
        self._check_cipher()
        return WriteContext(
            app=self._app,
            mapper=self._mapper,
            clock=self._clock,
            clock_skew=self._clock_skew,
            snapshot_every=self._snapshot_every,
        )

    @contextmanager
    def bulk_writes(self) -> Iterator[WriteContext]:
        """`write_context()` for the span of a bulk write (an import): a
        call under way, which `close()` waits for and refuses once closing
        (`DeskClosed`), as any other call of the desk."""
        with self._in_flight.call():
            yield self.write_context()

    @property
    def reports(self) -> ReportDesk:
        """Ownership, time to resolution, SLA, backlog and recurrence reports.

        They read SQLAlchemy views that follow the store; each report catches
        the views up first unless called with `catch_up=False`.
        """
        if self._reports is None:
            recorder = self._app.recorder
            runner = ProjectionRunner(
                StoreFeed(recorder, self._mapper),
                self._views,
                self._policies,
                workers=fork_workers(REBUILD_WORKERS),
            )
            self._reports = ReportDesk(
                runner,
                ReportQueries(self._views, self._policies),
                self._clock,
                listener=lambda: store_listener(recorder),
                views_where=redacted_url(self._views_url),
                desk=self,
                in_flight=self._in_flight,
                check_store_file=self._check_store_file,
            )
        return self._reports

    # ------------------------------------------------------------ commands

    def receive(
        self,
        *,
        by: str,
        customer: str,
        summary: str,
        channel: str,
        category: str,
        severity: Severity | str,
        expectation: str,
        external_ref: str | None = None,
        preferred_contact: str | None = None,
        at: datetime | None = None,
    ) -> UUID:
        """Record a new complaint owned by `by`; returns its id.

        With `external_ref` the id is derived from the reference, and receiving
        the same reference again returns the same id and records nothing.
        """
        return self._receive(
            by=by,
            at=at,
            customer=customer,
            summary=summary,
            channel=channel,
            category=category,
            severity=severity,
            expectation=expectation,
            external_ref=external_ref,
            preferred_contact=preferred_contact,
        )

    @counted
    def _receive(self, /, **arguments: Any) -> UUID:
        stamp_now = arguments.get("at") is None
        command = self._parse(c.Receive, uuid4(), **arguments)
        if command.external_ref is not None:
            command = command.model_copy(
                update={
                    "complaint_id": uuid5(EXTERNAL_REF_NAMESPACE, command.external_ref)
                }
            )
        self._execute(command, stamp_now=stamp_now)
        return command.complaint_id

    def acknowledge(
        self,
        complaint_id: UUID | str,
        /,
        *,
        by: str,
        paraphrase: str,
        at: datetime | None = None,
    ) -> Complaint:
        """Answer the customer, restating the complaint in your own words."""
        return self._run(
            c.Acknowledge, complaint_id, by=by, at=at, paraphrase=paraphrase
        )

    def apologize(
        self,
        complaint_id: UUID | str,
        /,
        *,
        by: str,
        apology: str,
        at: datetime | None = None,
    ) -> Complaint:
        return self._run(c.Apologize, complaint_id, by=by, at=at, apology=apology)

    def commit_plan(
        self,
        complaint_id: UUID | str,
        /,
        *,
        by: str,
        steps: Iterable[str],
        due: datetime,
        at: datetime | None = None,
    ) -> Complaint:
        """Tell the customer how it will be fixed (ordered steps) and by when."""
        return self._run(
            c.CommitPlan, complaint_id, by=by, at=at, steps=_listed(steps), due=due
        )

    def post_update(
        self,
        complaint_id: UUID | str,
        /,
        *,
        by: str,
        note: str,
        revised_due: datetime | None = None,
        revision_reason: str | None = None,
        at: datetime | None = None,
    ) -> Complaint:
        """Report progress; optionally move the due date, saying why."""
        return self._run(
            c.PostUpdate,
            complaint_id,
            by=by,
            at=at,
            note=note,
            revised_due=revised_due,
            revision_reason=revision_reason,
        )

    def resolve(
        self,
        complaint_id: UUID | str,
        /,
        *,
        by: str,
        resolution: str,
        explanation: str,
        at: datetime | None = None,
    ) -> Complaint:
        """The problem is fixed: what was done, and what went wrong."""
        return self._run(
            c.Resolve,
            complaint_id,
            by=by,
            at=at,
            resolution=resolution,
            explanation=explanation,
        )

    def confirm_satisfaction(
        self,
        complaint_id: UUID | str,
        /,
        *,
        by: str,
        satisfied: bool,
        reason: str | None = None,
        at: datetime | None = None,
    ) -> Complaint:
        """Record the customer's answer; `satisfied=False` (with a reason) reopens."""
        return self._run(
            c.ConfirmSatisfaction,
            complaint_id,
            by=by,
            at=at,
            satisfied=satisfied,
            reason=reason,
        )

    def log_prevention(
        self,
        complaint_id: UUID | str,
        /,
        *,
        by: str,
        root_cause: str,
        preventive_action: str,
        informed: Iterable[str],
        at: datetime | None = None,
    ) -> Complaint:
        """Close the case with what was done so it does not happen again."""
        return self._run(
            c.LogPrevention,
            complaint_id,
            by=by,
            at=at,
            root_cause=root_cause,
            preventive_action=preventive_action,
            informed=_listed(informed),
        )

    def transfer_ownership(
        self,
        complaint_id: UUID | str,
        /,
        *,
        by: str,
        to: str,
        reason: str,
        customer_told: bool,
        at: datetime | None = None,
    ) -> Complaint:
        return self._run(
            c.TransferOwnership,
            complaint_id,
            by=by,
            at=at,
            to=to,
            reason=reason,
            customer_told=customer_told,
        )

    def await_customer(
        self,
        complaint_id: UUID | str,
        /,
        *,
        by: str,
        reason: str,
        at: datetime | None = None,
    ) -> Complaint:
        """Wait on the customer (for a document, an answer): the SLA clock
        pauses, under a policy that pauses (the default; the regulators'
        presets do not). The wall clock never pauses; reports show both.
        """
        return self._run(c.AwaitCustomer, complaint_id, by=by, at=at, reason=reason)

    def customer_replied(
        self,
        complaint_id: UUID | str,
        /,
        *,
        by: str,
        note: str | None = None,
        at: datetime | None = None,
    ) -> Complaint:
        """The customer answered: a paused SLA clock runs again."""
        return self._run(c.CustomerReplied, complaint_id, by=by, at=at, note=note)

    def add_note(
        self,
        complaint_id: UUID | str,
        /,
        *,
        by: str,
        text: str,
        at: datetime | None = None,
    ) -> Complaint:
        return self._run(c.AddNote, complaint_id, by=by, at=at, text=text)

    def offer_gesture(
        self,
        complaint_id: UUID | str,
        /,
        *,
        by: str,
        description: str,
        value: Decimal | str | int | None = None,
        currency: str | None = None,
        at: datetime | None = None,
    ) -> Complaint:
        """Offer something extra: a concession, a discount, a refund of fees."""
        return self._run(
            c.OfferGesture,
            complaint_id,
            by=by,
            at=at,
            description=description,
            value=value,
            currency=currency,
        )

    @counted
    def execute(
        self, command: str, complaint_id: UUID | str | None = None, /, **arguments: Any
    ) -> Complaint:
        """Run a command named at run time, as importers and the command line do.

        Unlike the typed methods, which Python itself guards, this takes any
        keyword arguments and refuses an unknown one with `InvalidCommand`.
        Returns the complaint's view, also for `receive`.
        """
        command_type = (
            c.COMMAND_TYPES.get(command) if isinstance(command, str) else None
        )
        if command_type is None:
            known = ", ".join(sorted(c.COMMAND_TYPES))
            raise InvalidCommand.single(
                "execute", "command", f"{str(command)[:60]!r} is not one of {known}"
            )
        fields = set(command_type.model_fields) - {"complaint_id"}
        unknown = [name for name in arguments if name not in fields]
        if unknown:
            raise InvalidCommand(
                command,
                [
                    FieldProblem(name[:60], f"is not an argument of {command}")
                    for name in unknown
                ],
            )
        if command_type is c.Receive:
            if complaint_id is not None:
                raise InvalidCommand.single(
                    command, "complaint_id", "receive makes a new id; pass none"
                )
            return self.get(self._receive(**arguments))
        if complaint_id is None:
            raise InvalidCommand.single(command, "complaint_id", "is required")
        return self._run(command_type, complaint_id, **arguments)

    # ------------------------------------------------------------- queries

    @counted
    def get(
        self,
        complaint_id: UUID | str,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
    ) -> Complaint:
        """The complaint as it stands, as it stood after `version` events, or
        as it stood at the moment `as_of` (its events up to that time)."""
        complaint_uuid = _complaint_uuid(complaint_id, "get")
        if version is not None and (
            isinstance(version, bool) or not isinstance(version, int) or version < 1
        ):
            raise InvalidCommand.single("get", "version", "must be a whole number >= 1")
        if as_of is not None:
            if version is not None:
                raise InvalidCommand.single("get", "as_of", "give version or as_of")
            as_of = _aware(as_of, "get", "as_of")
        # No store holds a version past a signed 64-bit integer, and SQLite
        # refuses to compare with one: such a version is simply not there.
        stored_version = None if version is None else min(version, _MAX_VERSION)
        state = self._load(complaint_uuid, stored_version, as_of)
        if state is None:
            if as_of is not None and self._load(complaint_uuid) is not None:
                raise ComplaintNotFound(
                    complaint_uuid, f"as of {as_of.isoformat()} (received later)"
                )
            raise ComplaintNotFound(complaint_uuid)
        if version is not None and state.version < version:
            raise ComplaintNotFound(
                complaint_uuid, f"at version {version} (its latest is {state.version})"
            )
        return state

    @counted
    def history(self, complaint_id: UUID | str) -> CaseHistory:
        """Every event of the complaint, in order, with the stages it moved between."""
        complaint_uuid = _complaint_uuid(complaint_id, "history")
        history = history_of(complaint_uuid, self.events(complaint_uuid))
        if not history.records:
            raise ComplaintNotFound(complaint_uuid)
        return history

    @counted
    def events(self, complaint_id: UUID) -> list[ComplaintEvent]:
        """The stored events of one complaint, oldest first (empty if none)."""
        with store_errors(self.store_url):
            return [
                _as_complaint_event(event)
                for event in self._app.events.get(complaint_id)
            ]

    # --------------------------------------------------------------- audit

    @counted
    def verify(
        self, complaint_id: UUID | str | None = None, *, seal: Seal | None = None
    ) -> VerificationReport:
        """Replay the stored events and report every break, complaint by complaint.

        Checks each complaint's digest chain, version sequence, transitions and
        times straight from the stored rows (never from snapshots). With a
        `seal`, also reports chains cut short or rewritten after it was taken.
        """
        only = None if complaint_id is None else _complaint_uuid(complaint_id, "verify")
        verifier = ChainVerifier(seal, only=only)
        with store_errors(self.store_url):
            rows = stored_events_in_order(self._app.recorder, only)
            for _, chain in groupby(rows, key=lambda row: row.originator_id):
                records = []
                for stored in chain:
                    if isinstance(stored, MalformedRow):
                        verifier.malformed(*stored)
                    else:
                        records.append(self._stored_record(stored))
                verifier.check(records)
        report = verifier.report()
        sealed = seal is not None and any(
            e.complaint_id == only for e in seal.complaints
        )
        if only is not None and report.events == 0 and not sealed:
            # A complaint the seal pinned has vanished: that is the finding.
            raise ComplaintNotFound(only)
        return report

    @counted
    def seal(self, path: str | Path | None = None, *, overwrite: bool = False) -> Seal:
        """The head (version and digest) of every complaint's chain, sealed;
        written to `path` as JSON if given, as `export_case` writes a bundle
        (mode 0600, never over an existing file unless `overwrite`, never
        through a symbolic link: `FileExistsError`)."""
        entries = []
        with store_errors(self.store_url):
            for complaint_id in self._complaint_ids():
                rows = self._app.recorder.select_events(
                    complaint_id, desc=True, limit=1
                )
                record = self._stored_record(rows[0])
                stored_version(complaint_id, record.version)
                if record.payload is None:
                    raise HistoryViolation(
                        complaint_id, record.version, record.problem or "unreadable"
                    )
                entries.append(
                    SealEntry(
                        complaint_id=complaint_id,
                        version=record.version,
                        digest=_record_digest(record),
                    )
                )
        sealed = Seal.create(self._clock(), entries)
        if path is not None:
            write_private(
                path, sealed.model_dump_json(indent=2) + "\n", overwrite=overwrite
            )
        return sealed

    @counted
    def export_case(
        self,
        complaint_id: UUID | str,
        path: str | Path | None = None,
        *,
        overwrite: bool = False,
    ) -> CaseBundle:
        """A self-contained JSON bundle of one case; written to `path` if given.

        Check it anywhere with `amends.audit.verify_bundle(path)`. The bundle
        holds every customer field in the clear, even from an encrypted
        store, so the file is its owner's alone (mode 0600). It is written
        whole or not at all, never through a symbolic link, and never over
        an existing file unless `overwrite` (`FileExistsError`).
        """
        complaint_uuid = _complaint_uuid(complaint_id, "export_case")
        with store_errors(self.store_url):
            records = [
                self._stored_record(stored)
                for stored in self._app.recorder.select_events(complaint_uuid)
            ]
        if not records:
            raise ComplaintNotFound(complaint_uuid)
        unreadable = next((r for r in records if r.payload is None), None)
        if unreadable is not None:
            # A bundle holds events as stored, and this one has no JSON to
            # hold: the export is refused, naming it, and nothing written.
            raise HistoryViolation(
                complaint_uuid,
                unreadable.version,
                f"cannot be read ({unreadable.problem}), so no bundle can hold "
                "it: verify names every break",
            )
        try:
            bundle = CaseBundle.build(complaint_uuid, records, self._clock())
        except ValueError as exc:
            raise HistoryViolation(
                complaint_uuid, records[-1].version, str(exc)
            ) from None
        if path is not None:
            write_private(path, bundle.model_dump_json(indent=2), overwrite=overwrite)
        return bundle

    @counted
    def last_position(self) -> int:
        """The position of the newest event in the whole store (0 when empty).

        Positions only grow, so comparing two readings tells whether anything
        at all was recorded in between.
        """
        with store_errors(self.store_url):
            return self._app.recorder.max_notification_id() or 0

    def _check_cipher(self) -> None:
        """Refuse to read or write a store whose events this desk cannot
        read (`ConfigurationError`): encrypted under another key, encrypted
        when this desk has no key, or plain when it has one. A new complaint
        reads nothing, so without this check it was recorded, in the open or
        under the wrong key, among the others, and then every report, seal
        and verify of the store failed on it; a reader with no key called
        every event a break. One desk writes a store with one key, so any of
        its first and newest few events that reads (decrypts with the key, or
        needs none, and decodes to a JSON object) says the key fits; from
        then on an event that does not decrypt is that event's break
        (`PydanticMapper.key_checked`), not the key's.
        """
        if self._cipher_fits:
            return
        try:
            with store_errors(self.store_url):
                recorder = self._app.recorder
                first = recorder.select_notifications(start=None, limit=KEY_PROBES)
                last = recorder.max_notification_id() or 0
                newest = (
                    recorder.select_notifications(
                        start=max(last - KEY_PROBES + 1, 1), limit=KEY_PROBES
                    )
                    if last
                    else []
                )
        except (StoreUnavailable, ValueError):
            # A row the driver or the library cannot read at all (a hand
            # edit: text that is no UTF-8, an id that is no UUID), or the
            # store out of reach: the read or write that follows meets it
            # and says so (verify: as that row's break).
            return
        if not first:
            # Only a store with an event says which key fits it: another
            # process may yet write the first one.
            return
        # Any of the store's first and newest events will do: a damaged row,
        # or several, is verify()'s to name, not a reason to blame the key.
        # But one must decode (decrypt, decompress, parse as an object): a
        # row that merely looks readable says nothing. AES-GCM output begins
        # with a random nonce, so about one encrypted event in 256 begins
        # with "{"; a desk without the key took such an event for plain JSON
        # that happened to be damaged, called its lack of a key fitting, and
        # stored customers' names in the open among the encrypted events.
        read = [n.state for n in {n.id: n for n in (*first, *newest)}.values()]
        failures: list[tuple[Any, Exception]] = []
        for state in read:
            try:
                self._mapper.decode_state(state)
            except (ConfigurationError, UnreadableRecord) as exc:
                failures.append((state, exc))
            else:
                self._cipher_fits = self._mapper.key_checked = True
                return
        if self._mapper.cipher is None and any(
            self._damaged_text(state) for state, _ in failures
        ):
            # Plain JSON damaged where probed: ciphertext is no UTF-8 text
            # (random bytes past a few dozen are not), so the store is plain
            # and verify() names the rows; refused, a store whose probed
            # events were all damaged could not even be verified.
            self._cipher_fits = self._mapper.key_checked = True
            return
        raise self._key_refusal(failures)

    def _key_refusal(self, failures: list[tuple[Any, Exception]]) -> ConfigurationError:
        """Why this desk's key (or lack of one) reads none of the store's
        probed events, each given with why it did not decode. Whether the
        events look like plain JSON only chooses the words: it cannot say
        that one reads (see `_check_cipher`)."""
        plain = [self._looks_plain(state) for state, _ in failures]
        if self._mapper.cipher is None:
            if not all(plain):
                return ConfigurationError(
                    "this store's events are encrypted: set "
                    f"{CIPHER_KEY_VARIABLE} (or cipher_key=) to the key they "
                    "were written with; without it, its events cannot be "
                    "read, and new complaints would be stored in the open "
                    "among them"
                )
            return ConfigurationError(
                "none of this store's first and newest events reads without "
                "a cipher key (they begin as JSON does, yet do not parse: "
                "encrypted, or damaged): if they are encrypted, set "
                f"{CIPHER_KEY_VARIABLE} (or cipher_key=) to the key they were "
                "written with; without it, new complaints would be stored in "
                "the open among them"
            )
        wrong_key = [exc for _, exc in failures if isinstance(exc, ConfigurationError)]
        if wrong_key and all(plain):
            return ConfigurationError(
                "this store's events are not encrypted: open it without "
                f"a cipher key ({CIPHER_KEY_VARIABLE}, cipher_key=); with "
                "one, its events cannot be read, and new complaints would "
                "be encrypted among them"
            )
        if wrong_key:
            return wrong_key[0]
        # Decrypted, yet not a JSON object (or no payload at all): the key
        # cannot be told to fit by rows such as these.
        return ConfigurationError(
            "none of this store's first and newest events reads with this "
            f"cipher key ({failures[0][1]}), so whether the key fits cannot "
            "be told: nothing is read or written"
        )

    def _looks_plain(self, state: Any) -> bool:
        """Whether a stored state begins as a JSON object does, decompressed
        first if this store compresses (a guess, for a refusal's words)."""
        return self._as_json_start(state) is not None

    def _damaged_text(self, state: Any) -> bool:
        """Whether a stored state that did not decode is UTF-8 text that
        begins as a JSON object does: plain JSON, damaged. AES-GCM output
        begins with "{" once in 256, but is UTF-8 text about never."""
        data = self._as_json_start(state)
        if data is None:
            return False
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    def _as_json_start(self, state: Any) -> bytes | None:
        """A stored state's bytes, decompressed if this store compresses,
        when they begin as a JSON object does; else None."""
        if not isinstance(state, bytes | bytearray | memoryview):
            return None
        data = bytes(state)
        if self._mapper.compressor:
            try:
                data = self._mapper.compressor.decompress(data)
            except Exception:
                return None
        return data if data.lstrip()[:1] == b"{" else None

    def _file_id(self) -> tuple[int, int] | None:
        if self._store_file is None:
            return None
        try:
            found = self._store_file.stat()
        except FileNotFoundError:
            return None
        return found.st_dev, found.st_ino

    def _check_store_file(self) -> None:
        """Refuse to go on reading a SQLite store whose file was replaced (a
        backup restored by renaming it into place) or removed since this
        desk opened it: the connections still read the old file, so a
        follower went on for ever hearing none of the writes to the new one,
        or failed on "database disk image is malformed" as "a bug"."""
        now = self._file_id()
        if self._store_file is None or now == self._store_file_id:
            return
        how = "removed" if now is None else "replaced"
        raise StoreUnavailable(
            f"the store file {self._store_file} was {how} since this desk "
            "opened it: open a new desk (start the follower again) to read "
            "the file there now"
        )

    # ----------------------------------------------------------- lifecycle

    @property
    def _app(self) -> EventStoreApplication:
        if self._open_app is None:
            raise DeskClosed(f"{self!r} is closed: open a new ComplaintDesk")
        return self._open_app

    def close(self) -> None:
        """Release the store's and the views' connections; closing twice is
        harmless, and using the desk afterwards raises `DeskClosed`."""
        if not self._in_flight.close():
            return
        app, self._open_app = self._open_app, None
        assert app is not None
        if self._reports is not None:
            self._reports.close()
        self._views.dispose()
        app.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        # Its password hidden: the name is in logs, and in `DeskClosed`.
        return f"ComplaintDesk({redacted_url(self.store_url)!r})"

    # ------------------------------------------------------------ internals

    @counted
    def _run(
        self,
        /,
        command_type: type[c.Command],
        complaint_id: UUID | str,
        **arguments: Any,
    ) -> Complaint:
        stamp_now = arguments.get("at") is None
        command = self._parse(
            command_type, _complaint_uuid(complaint_id, command_type.name), **arguments
        )
        state = self._execute(command, stamp_now=stamp_now)
        assert state is not None
        return state

    def _parse(
        self, command_type: type[TCommand], complaint_id: UUID, **arguments: Any
    ) -> TCommand:
        explicit_at = arguments.get("at")
        now = self._clock()
        if explicit_at is None:
            arguments["at"] = now
        command = c.parse_command(command_type, complaint_id=complaint_id, **arguments)
        if explicit_at is not None and command.at > now + self._clock_skew:
            raise InvalidCommand.single(
                command_type.name,
                "at",
                f"{command.at.isoformat()} is in the future (now is {now.isoformat()})",
            )
        return command

    def _execute(self, command: c.Command, *, stamp_now: bool) -> Complaint | None:
        """Decide and save, deciding again on fresh state after a lost race.

        A command whose `at` the caller left to the clock happens now, and
        never before the complaint's last event: another process's clock may
        run a little ahead, and a retry comes later than the first try.
        """
        for attempt in range(self._max_attempts):
            if attempt:
                _pause(random.uniform(0, RACE_BACKOFF * 2 ** (attempt - 1)))
            state = self._load(command.complaint_id)
            if stamp_now and state is not None:
                at = max(self._clock(), state.last_event_at)
                if not recordable(at):
                    # Only a store written before commands were limited to
                    # these years holds an event after them.
                    raise InvalidCommand.single(
                        command.name,
                        "at",
                        "would follow the complaint's last event, at "
                        f"{state.last_event_at.isoformat()}, outside the years "
                        f"{FIRST_YEAR} to {LAST_YEAR} (UTC) commands may record",
                    )
                if at != command.at:
                    command = command.model_copy(update={"at": at})
            events = decide(command, state)
            if not events:
                return state
            try:
                with store_errors(self.store_url):
                    self._app.save(*events)
            except RecordConflictError:
                self.retries += 1
                continue
            for event in events:
                previous = state.version if state is not None else 0
                state = evolve(state, event)
                if self._snapshot_every and (
                    state.version // self._snapshot_every
                    > previous // self._snapshot_every
                ):
                    self._take_snapshot(state)
            if state is not None:
                self._cache.put(state)
            return state
        raise ConcurrencyConflict(command.complaint_id, self._max_attempts)

    def _load(
        self,
        complaint_id: UUID,
        version: int | None = None,
        as_of: datetime | None = None,
    ) -> Complaint | None:
        """The complaint now, or at a version or moment.

        The latest state comes from the desk's cache when it has the complaint
        and the store still holds the cached head (`_beyond`), fast-forwarded
        by whatever the store holds beyond it (so a concurrent writer's events
        are never missed); otherwise, and for the past, from the newest usable
        snapshot at or before the point asked, plus events.
        """
        latest = version is None and as_of is None
        with store_errors(self.store_url):
            state = self._cache.get(complaint_id) if latest else None
            events = self._beyond(state) if state is not None else None
            if events is None:
                if state is not None:
                    self._cache.discard(state)
                snapshot = self._snapshot(complaint_id, version, as_of)
                state = snapshot.state if snapshot is not None else None
                events = self._app.events.get(
                    complaint_id,
                    gt=state.version if state is not None else None,
                    lte=version,
                )
            for event in events:
                complaint_event = _as_complaint_event(event)
                if as_of is not None and complaint_event.timestamp > as_of:
                    break
                state = evolve(state, complaint_event)
        if latest and state is not None:
            self._cache.put(state)
        return state

    def _beyond(self, cached: Complaint) -> Iterator[object] | None:
        """The stored events after a cached state, or None when the store no
        longer holds its head event as it was (missing, or another event at
        that version): then the cached state is no prefix of the stored
        history, and deciding on it would record an event at a version the
        store skips, or chained to an event it does not hold.

        A backup restored in place under a running desk does both: it takes
        away the events after the backup, and the desks that use the store
        afterwards may write others at the same versions. The head's digest
        covers the whole chain up to it, so one row, read in the same query
        as the newer ones, tells; its payload is decoded for the digest
        alone, not made an event."""
        stored = self._app.recorder.select_events(cached.id, gt=cached.version - 1)
        head = self._stored_record(stored[0]) if stored else None
        if (
            head is None
            or head.version != cached.version
            or head.payload is None
            or _record_digest(head) != cached.head_digest
        ):
            logger.warning(
                "complaint %s: the store no longer holds version %d as this "
                "desk last read it (a backup restored?); reading it afresh",
                cached.id,
                cached.version,
            )
            return None
        return map(self._mapper.to_domain_event, stored[1:])

    def _snapshot(
        self, complaint_id: UUID, version: int | None, as_of: datetime | None
    ) -> ComplaintSnapshot | None:
        if self._app.snapshots is None or not self._snapshot_every:
            return None
        snapshots = self._app.snapshots.get(
            complaint_id, desc=True, lte=version, limit=None if as_of else 1
        )
        try:
            for snapshot in snapshots:
                if not isinstance(snapshot, ComplaintSnapshot):
                    return None
                if as_of is None or snapshot.timestamp <= as_of:
                    return snapshot
        except (ValidationError, UnreadableRecord) as exc:
            # A snapshot of an older Complaint model: replay the events instead.
            logger.info("ignoring an unreadable snapshot of %s: %s", complaint_id, exc)
        return None

    def _take_snapshot(self, state: Complaint) -> None:
        snapshot = ComplaintSnapshot(
            originator_id=state.id,
            originator_version=state.version,
            timestamp=state.last_event_at,
            state=state,
        )
        try:
            assert self._app.snapshots is not None
            self._app.snapshots.put([snapshot])
        except (PersistenceError, OSError) as exc:
            # The command is recorded; a missing snapshot only costs a longer replay.
            logger.warning("could not store a snapshot of %s: %s", state.id, exc)

    def _stored_record(self, stored: StoredEvent) -> StoredRecord:
        complaint_id = _as_uuid(stored.originator_id)
        try:
            payload = self._mapper.decode_payload(stored)
        except UnreadableRecord as exc:
            return StoredRecord(
                complaint_id, stored.originator_version, stored.topic, None, str(exc)
            )
        return StoredRecord(
            complaint_id, stored.originator_version, stored.topic, payload
        )

    def _complaint_ids(self) -> list[UUID]:
        """Every complaint id in the store, in id order."""
        return sorted(complaint_ids(self._app.recorder))


def _as_complaint_event(event: object) -> ComplaintEvent:
    if not isinstance(event, ComplaintEvent):
        raise TypeError(f"unexpected event type in the store: {type(event).__name__}")
    return event


def _listed(items: Iterable[str]) -> Any:
    """A list of the items; anything else goes on as is for pydantic to name.

    A lone string stays a string: iterating it would split it into letters.
    """
    if isinstance(items, str):
        return items
    try:
        return list(items)
    except TypeError:
        return items


def _as_uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)


def _record_digest(record: StoredRecord) -> str:
    assert record.payload is not None
    return payload_digest(
        record.topic, record.complaint_id, record.version, record.payload
    )


def _aware(value: datetime, command: str, field: str) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidCommand.single(
            command,
            field,
            f"must be a timezone-aware datetime, not {type(value).__name__}",
        )
    if value.utcoffset() is None:
        raise InvalidCommand.single(
            command,
            field,
            "must be a timezone-aware datetime (a naive one has no zone)",
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidCommand.single(
            command,
            field,
            f"{value.isoformat()} is out of the representable range in UTC",
        ) from None


def _complaint_uuid(complaint_id: UUID | str, command: str) -> UUID:
    try:
        return _UUID.validate_python(complaint_id)
    except ValidationError:
        raise InvalidCommand.single(
            command, "complaint_id", f"{str(complaint_id)[:60]!r} is not a complaint id"
        ) from None


def _pause(seconds: float) -> None:
    """The wait before deciding a command again after a lost race (a
    function of its own, so a test can see the waits without waiting)."""
    time.sleep(seconds)


@contextmanager
def store_errors(store_url: str) -> Iterator[None]:
    """Turn the library's database failures into `StoreUnavailable`, and a
    PostgreSQL schema the database lacks into `ConfigurationError`.

    Conflicts pass through: they are a lost race, which the desk retries.
    """
    try:
        yield
    except RecordConflictError:
        raise
    except sqlite3.DatabaseError as exc:
        # The library opens a SQLite file's connection outside its own
        # error handling: a file that is no database comes out raw.
        where = redacted_url(store_url)
        if names_no_database(exc):
            raise ConfigurationError(
                f"event store {where}: the file is not a SQLite database ({exc})"
            ) from exc
        raise StoreUnavailable(
            f"event store {where} failed: {first_line(exc)}"
        ) from exc
    except (PersistenceError, OSError) as exc:
        where = redacted_url(store_url)
        if names_a_missing_schema(exc.__cause__):
            raise ConfigurationError(
                f"event store {where}: {first_line(exc)} "
                "(create it, or name another with ?schema=)"
            ) from exc
        if timed_out_on_the_pool(exc):
            _no_connection(where, store_url, exc)
        raise StoreUnavailable(
            f"event store {where} failed: {first_line(exc)}"
        ) from exc


def _reachable(store_url: str, settings: Mapping[str, str]) -> None:
    """Refuse at once a PostgreSQL store no connection can be made to: its
    pool would try for the whole connect timeout, then say only that it
    timed out."""
    found = why_no_connection(settings, at_most=None)
    if found is not None:
        _refuse(redacted_url(store_url), *found)


def _refuse(
    where: str, words: str, setting: bool, cause: BaseException | None = None
) -> NoReturn:
    if setting:
        raise ConfigurationError(f"event store {where}: {words}") from cause
    raise StoreUnavailable(f"event store {where} failed: {words}") from cause


def _no_connection(where: str, store_url: str, exc: BaseException) -> NoReturn:
    """No pooled connection came in time: say why, in the server's words (a
    database, user or password it does not know is a setting to fix)."""
    found = why_no_connection(store_settings(store_url))
    if found is None:
        raise StoreUnavailable(
            f"event store {where} failed: {first_line(exc)}; the server accepts "
            "connections now, so every connection of the desk's pool was in use "
            "(raise ?pool_size= or ?max_overflow=, or share the desk among fewer "
            "threads), or the server has only just come back"
        ) from exc
    _refuse(where, *found, cause=exc)
