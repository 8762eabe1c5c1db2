"""SLA policies: how long a team may take to acknowledge, update and resolve.

A policy names its targets per severity and the clock they run on: the wall
clock ("calendar") or business time in a `WorkingCalendar` ("business"), where
weekends, public holidays and the hours outside the working day do not count.
Either clock can stand still while the team waits on the customer (pauses), so a
pause is never counted against the team, on a policy that pauses (the team's
own promises; a regulator's deadline runs on); reports show the wall clock
beside it so that a pause cannot hide delay. A policy may count from the end
of the day on which its clock starts, as rules in business days do, and may
count its acknowledgement in business time while its other targets run on the
wall clock (RG 271: one business day to acknowledge, 30 calendar days to
answer).

Everything here is pure arithmetic on the instants passed in: no clock is read.
Instants in and out are timezone-aware and in UTC. Business time is real time
spent inside business hours, counted in whole microseconds, so a deadline and
the elapsed time at that deadline agree exactly.
"""

from __future__ import annotations

import functools
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from amends.domain.stages import Severity
from amends.domain.values import FIRST_YEAR, LAST_YEAR, Instant, recordable

__all__ = [
    "DEFAULT_POLICY_NAME",
    "PRESETS",
    "PolicySchedule",
    "SlaPolicy",
    "Targets",
    "WorkingCalendar",
    "preset",
]

Pause = tuple[datetime, datetime | None]
"""An interval when the SLA clock stood still; an end of None means still paused."""

_ZERO = timedelta(0)
_HOUR = timedelta(hours=1)
_MICROSECOND = timedelta(microseconds=1)
_DAY = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIDNIGHT = time(0)
_LATEST_DAY_START = time(2)
"""The latest a local day starts where the clocks jump over its midnight."""

FIRST_BUSINESS_YEAR = FIRST_YEAR
LAST_BUSINESS_YEAR = LAST_YEAR
"""Business calendars cover these years; holiday rules outside them are guesswork."""


# ---------------------------------------------------------------------------
# Instants


def _utc(value: datetime, argument: str) -> datetime:
    """Refuse naive datetimes: a wall-clock reading without a zone is no instant."""
    zone = value.tzinfo
    if zone is UTC:
        return value
    if zone is None or value.utcoffset() is None:
        raise ValueError(
            f"{argument} must be timezone-aware, got naive {value.isoformat()}"
        )
    return value.astimezone(UTC)


def _microseconds(value: datetime) -> int:
    """Business arithmetic runs on integers so that no rounding ever creeps in."""
    span = value - _EPOCH
    return (span.days * 86_400 + span.seconds) * 1_000_000 + span.microseconds


def _instant(microseconds: int) -> datetime:
    return _EPOCH + timedelta(microseconds=microseconds)


def _whole_microseconds(value: timedelta) -> int:
    return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds


_NEVER = datetime.max.replace(tzinfo=UTC)
"""The end of a pause that is still open, and of a window with no end."""


def _paused_intervals(
    pauses: Sequence[Pause], start: datetime, end: datetime = _NEVER
) -> list[tuple[datetime, datetime]]:
    """The pauses clipped to [start, end], sorted and merged so that each paused
    moment counts once; a pause still open ends at `end`."""
    clipped: list[tuple[datetime, datetime]] = []
    for index, (pause_start, pause_end) in enumerate(pauses):
        if pause_start.tzinfo is not UTC:
            pause_start = _utc(pause_start, f"pauses[{index}] start")
        if pause_end is None:
            pause_end = end
        else:
            if pause_end.tzinfo is not UTC:
                pause_end = _utc(pause_end, f"pauses[{index}] end")
            if pause_end < pause_start:
                raise ValueError(
                    f"pauses[{index}] ends ({pause_end.isoformat()}) "
                    f"before it begins ({pause_start.isoformat()})"
                )
            if pause_end > end:
                pause_end = end
        if pause_start < start:
            pause_start = start
        if pause_start < pause_end:
            clipped.append((pause_start, pause_end))
    if len(clipped) < 2:
        return clipped
    clipped.sort()
    merged = [clipped[0]]
    for pause_start, pause_end in clipped[1:]:
        last_start, last_end = merged[-1]
        if pause_start <= last_end:
            if pause_end > last_end:
                merged[-1] = (last_start, pause_end)
        else:
            merged.append((pause_start, pause_end))
    return merged


# ---------------------------------------------------------------------------
# Holidays and business windows, cached per year


@functools.lru_cache(maxsize=512)
def _working_days(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    """The year's working days as the `holidays` package has them: neither a
    public holiday nor on the country's own weekend (Friday and Saturday in
    Israel and Egypt, Friday alone in Iran, by year where it changed), plus
    the weekend days some countries work in exchange for a bridge holiday.
    Taking Saturday and Sunday everywhere counted Fridays as business days in
    Israel, and Sundays as none. Computed once a year: a projection asks often.
    """
    found = holidays.country_holidays(country, subdiv=subdivision, years=year)
    days = (date(year, 1, 1) + timedelta(days=n) for n in range(366))
    return frozenset(
        day for day in days if day.year == year and found.is_working_day(day)
    )


def _is_business_day(country: str, subdivision: str | None, day: date) -> bool:
    return day in _working_days(country, subdivision, day.year)


_CalendarKey = tuple[str, str | None, str, tuple[time, time] | None]


@dataclass(frozen=True, slots=True)
class _YearWindows:
    """One local year's business windows as UTC microseconds, with running totals.

    Window i is [starts[i], ends[i]); before[i] and through[i] are the business
    microseconds of the year before and up to the end of window i.
    """

    starts: tuple[int, ...]
    ends: tuple[int, ...]
    before: tuple[int, ...]
    through: tuple[int, ...]
    total: int

    def up_to(self, instant: int) -> int:
        """Business microseconds of this year's windows before `instant`."""
        index = bisect_right(self.starts, instant) - 1
        if index < 0:
            return 0
        return self.before[index] + min(
            instant - self.starts[index], self.ends[index] - self.starts[index]
        )

    def reaching(self, amount: int) -> int:
        """The first instant at which this year's business time reaches `amount` > 0."""
        index = bisect_left(self.through, amount)
        return self.starts[index] + amount - self.before[index]


def _local_instant(day: date, at: time, zone: ZoneInfo) -> int:
    """A local wall-clock time as UTC; a time skipped by a clock change maps
    with the offset in force before the change (zoneinfo's fold=0)."""
    return _microseconds(datetime.combine(day, at, tzinfo=zone))


@functools.lru_cache(maxsize=256)
def _year_windows(key: _CalendarKey, year: int) -> _YearWindows:
    """Built once per calendar and year so later look-ups are two bisections."""
    country, subdivision, timezone, working_hours = key
    if not FIRST_BUSINESS_YEAR - 1 <= year <= LAST_BUSINESS_YEAR + 1:
        return _YearWindows((), (), (), (), 0)
    zone = ZoneInfo(timezone)
    working_days = _working_days(country, subdivision, year)
    starts: list[int] = []
    ends: list[int] = []
    before: list[int] = []
    through: list[int] = []
    total = 0
    day = date(year, 1, 1)
    while day.year == year:
        if day in working_days:
            if working_hours is None:
                opens = _local_instant(day, _MIDNIGHT, zone)
                closes = _local_instant(day + _DAY, _MIDNIGHT, zone)
            else:
                opens = _local_instant(day, working_hours[0], zone)
                closes = _local_instant(day, working_hours[1], zone)
            if closes > opens:
                starts.append(opens)
                ends.append(closes)
                before.append(total)
                total += closes - opens
                through.append(total)
        day += _DAY
    return _YearWindows(
        tuple(starts), tuple(ends), tuple(before), tuple(through), total
    )


def _check_business_range(value: datetime, argument: str) -> None:
    if not recordable(value):  # the calendars' years are the commands'
        raise ValueError(
            f"{argument} ({value.isoformat()}) is outside the years "
            f"{FIRST_BUSINESS_YEAR} to {LAST_BUSINESS_YEAR} that business "
            "calendars cover"
        )


def _business_between(key: _CalendarKey, start: datetime, end: datetime) -> int:
    """Business microseconds in [start, end], both UTC, start <= end."""
    low = _microseconds(start)
    high = _microseconds(end)
    total = 0
    # A local year differs from the UTC year by at most one; years outside
    # the calendars' hold no business time.
    first = max(start.year - 1, FIRST_BUSINESS_YEAR - 1)
    for year in range(first, min(end.year + 1, LAST_BUSINESS_YEAR + 1) + 1):
        windows = _year_windows(key, year)
        total += windows.up_to(high) - windows.up_to(low)
    return total


def _business_add(key: _CalendarKey, start: datetime, amount: int) -> datetime | None:
    """The first instant at which `amount` > 0 business microseconds have
    passed; None if that is after the calendars end."""
    origin = _microseconds(start)
    year = max(start.year - 1, FIRST_BUSINESS_YEAR - 1)
    while year <= LAST_BUSINESS_YEAR + 1:
        windows = _year_windows(key, year)
        used = windows.up_to(origin)
        available = windows.total - used
        if amount <= available:
            return _instant(windows.reaching(used + amount))
        amount -= available
        year += 1
    return None


# ---------------------------------------------------------------------------
# Working calendars


def _end_of_day(moment: datetime, timezone: str) -> datetime:
    """The local midnight in `timezone` that ends the day `moment` falls on."""
    zone = ZoneInfo(timezone)
    day = moment.astimezone(zone).date()
    return _instant(_local_instant(day + _DAY, _MIDNIGHT, zone))


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {value!r}") from exc
    return value


class WorkingCalendar(BaseModel):
    """Where and when a team works: its public holidays and its working day.

    Days and hours are local to `timezone`, so 09:00 means 09:00 on the office
    wall clock in winter and summer alike. Business time is the real time that
    passes inside those hours; on the rare weekday when local clocks change
    inside them, that day's business time is an hour shorter or longer (in the
    UK, the EU and the US clocks change on Sundays, outside any business day).
    Weekends are the country's own, as the `holidays` package knows them;
    shifts past midnight are not modelled.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    country: str = Field(min_length=2, max_length=3)
    """ISO 3166 code understood by `holidays.country_holidays`, such as GB."""
    subdivision: str | None = Field(default=None, min_length=1)
    """A region with holidays of its own, such as ENG, SCT or NIR for GB."""
    timezone: str = "UTC"
    """The IANA zone of the office, such as Europe/London."""
    working_hours: tuple[time, time] | None = None
    """Opening and closing local time; None counts each business day whole (24h)."""

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        return _known_zone(value)

    @field_validator("working_hours")
    @classmethod
    def _opening_before_closing(
        cls, value: tuple[time, time] | None
    ) -> tuple[time, time] | None:
        if value is None:
            return None
        opens, closes = value
        if opens.tzinfo is not None or closes.tzinfo is not None:
            raise ValueError("working hours are local wall-clock times, without zone")
        if opens >= closes:
            raise ValueError(
                f"opening time {opens.isoformat()} must come before "
                f"closing time {closes.isoformat()} (shifts past midnight "
                "are not supported)"
            )
        return value

    @model_validator(mode="after")
    def _known_holidays(self) -> Self:
        try:
            holidays.country_holidays(self.country, subdiv=self.subdivision)
        except NotImplementedError as exc:
            raise ValueError(f"no public holidays known: {exc}") from exc
        return self

    def end_of_day(self, moment: datetime) -> datetime:
        """The local midnight that ends the day `moment` falls on, in UTC."""
        return _end_of_day(_utc(moment, "moment"), self.timezone)

    def is_business_day(self, day: date) -> bool:
        """A working day in this country or region: not on its weekend, nor
        a public holiday there."""
        return _is_business_day(self.country, self.subdivision, day)

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Business time between two instants; zero when `end` is not after `start`."""
        start = _utc(start, "start")
        end = _utc(end, "end")
        if end <= start:
            return _ZERO
        _check_business_range(start, "start")
        _check_business_range(end, "end")
        return timedelta(
            microseconds=_business_between(_calendar_key(self), start, end)
        )

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The first instant at which `duration` of business time has passed since
        `start`; a zero duration is due at once, even outside business hours."""
        start = _utc(start, "start")
        if duration < _ZERO:
            raise ValueError(f"duration must not be negative, got {duration}")
        if not duration:
            return start
        _check_business_range(start, "start")
        due = _business_add(_calendar_key(self), start, _whole_microseconds(duration))
        if due is None:
            raise ValueError(
                f"the business time runs past {LAST_BUSINESS_YEAR}, "
                "the last year business calendars cover"
            )
        return due


def _calendar_key(calendar: WorkingCalendar) -> _CalendarKey:
    """What the window cache is keyed on: models themselves hash poorly."""
    return (
        calendar.country,
        calendar.subdivision,
        calendar.timezone,
        calendar.working_hours,
    )


# ---------------------------------------------------------------------------
# Policies


MAX_TARGET = timedelta(days=3660)
"""The longest target: ten years. No regime or team promises longer, and a
deadline past the last date there is would stop every report (a units slip:
seconds given as days)."""


class Targets(BaseModel):
    """How soon each promise falls due, as SLA time from the event that starts it.

    A target left as None is not measured: a regime that names no figure gets
    none invented for it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    acknowledge_within: timedelta | None = None
    """From receipt to the first acknowledgement."""
    update_every: timedelta | None = None
    """The longest gap allowed between two contacts with the customer."""
    resolve_within: timedelta | None = None
    """From receipt to the resolution (or the final response a regime asks for)."""

    @field_validator(
        "acknowledge_within", "update_every", "resolve_within", mode="before"
    )
    @classmethod
    def _not_a_bare_number(cls, value: object) -> object:
        """pydantic reads a number as seconds: `resolve_within=30`, meant as
        days, was 30 seconds, and every complaint breached."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(
                f"give a timedelta, or an ISO 8601 duration such as 'PT24H', not "
                f"the bare number {value} (read as {value} seconds)"
            )
        return value

    @field_validator("acknowledge_within", "update_every", "resolve_within")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= _ZERO:
            raise ValueError(f"must be a positive duration, got {value}")
        if value is not None and value > MAX_TARGET:
            raise ValueError(
                f"must be at most {MAX_TARGET.days} days, got {value} "
                "(seconds given as days?)"
            )
        return value


class SlaPolicy(BaseModel):
    """Named, versioned targets per severity and the clock they are measured on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    version: int = Field(default=1, ge=1)
    clock: Literal["calendar", "business"] = "calendar"
    calendar: WorkingCalendar | None = None
    """The working calendar of a business clock, or of the acknowledgement
    alone (`acknowledge_on_business_clock`); unused, so refused, otherwise."""
    targets: dict[Severity, Targets]
    keep_plan_due: bool = True
    """The due date the team promised in its plan is a target too."""
    pause_on_await: bool = True
    """Waiting on the customer (from `await_customer` to `customer_replied`)
    stops this policy's clock. A team's own promises wait for the customer; a
    regulator's deadline runs from receipt whatever the customer does, so the
    regulators' presets do not pause. The wall clock never pauses, and waits
    are reported either way."""
    from_end_of_day: bool = False
    """Deadlines are counted from the end of the day (local midnight) on which
    the event that starts them happened, as rules that count days do ("by the
    end of eight weeks after its receipt", "15 business days after the day on
    which it received the complaint"): they fall at the end of a day, not at
    the hour of receipt. The day is local to the working calendar of a
    business clock, or to `timezone` on a calendar clock (and to the working
    calendar, in the same zone, for `acknowledge_on_business_clock`)."""
    timezone: str | None = None
    """The IANA zone whose midnight ends a day for `from_end_of_day` on a
    calendar clock (a business clock's working calendar names its own)."""
    acknowledge_on_business_clock: bool = False
    """The acknowledgement target is business time in `calendar` while the
    other targets run on the calendar clock: RG 271's "24 hours or one
    business day", whichever is later, is the end of the next business day,
    and its final response 30 calendar days. On a calendar without working
    hours a day of business time is one whole business day. Left out of the
    policy's JSON when not set, so the policies written before it existed
    read and fingerprint (the views' tracking row) as they did."""
    description: str = ""
    """Where the figures come from, and what the policy does not model."""

    @model_serializer(mode="wrap")
    def _without_unset_acknowledgement_clock(
        self, handler: SerializerFunctionWrapHandler
    ) -> dict[str, Any]:
        """Leave `acknowledge_on_business_clock` out when not set: the JSON
        and fingerprint of every policy without it stay as they were. (A
        field's `exclude_if` would do it too, but only in pydantic releases
        newer than the 2.7 amends asks for.)"""
        data: dict[str, Any] = handler(self)
        if not self.acknowledge_on_business_clock:
            data.pop("acknowledge_on_business_clock", None)
        return data

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        return None if value is None else _known_zone(value)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.clock == "business" and self.calendar is None:
            raise ValueError("a business clock needs a working calendar")
        if self.from_end_of_day and self.clock == "calendar" and not self.timezone:
            raise ValueError(
                "from_end_of_day on a calendar clock needs a timezone: where a "
                "day ends (a business clock's working calendar says so itself)"
            )
        if self.timezone is not None and not (
            self.clock == "calendar" and self.from_end_of_day
        ):
            raise ValueError(
                "timezone says where a day ends for from_end_of_day on a "
                "calendar clock, and is used nowhere else: a business clock's "
                "working calendar names its own"
            )
        if self.acknowledge_on_business_clock:
            self._check_acknowledgement_clock()
        elif self.clock == "calendar" and self.calendar is not None:
            raise ValueError(
                "a calendar clock ignores the working calendar: set "
                "clock='business' to use it, or acknowledge_on_business_clock "
                "for the acknowledgement alone"
            )
        missing = [
            severity.value for severity in Severity if severity not in self.targets
        ]
        if missing:
            raise ValueError(
                "targets are needed for every severity; missing: " + ", ".join(missing)
            )
        return self

    def _check_acknowledgement_clock(self) -> None:
        """Refuse an acknowledgement on the business clock that has no
        calendar to count in, or whose days would end at another midnight
        than the policy's other targets'."""
        calendar = self.calendar
        if self.clock == "business":
            raise ValueError(
                "acknowledge_on_business_clock is for a calendar clock: on a "
                "business clock every target is business time already"
            )
        if calendar is None:
            raise ValueError(
                "acknowledge_on_business_clock needs a working calendar: the "
                "business days the acknowledgement is counted in"
            )
        if self.timezone is not None and calendar.timezone != self.timezone:
            raise ValueError(
                f"the working calendar's timezone {calendar.timezone!r} is not "
                f"the policy's {self.timezone!r}: the acknowledgement's day "
                "would end at another midnight than the other targets'"
            )

    def _business_calendar(self, acknowledging: bool) -> WorkingCalendar | None:
        """The working calendar a target is counted in; None on the calendar
        clock. The acknowledgement's (`acknowledging`) may differ."""
        if self.clock == "business" or (
            acknowledging and self.acknowledge_on_business_clock
        ):
            return self.calendar
        return None

    def _counted_from(
        self, start: datetime, calendar: WorkingCalendar | None
    ) -> datetime | None:
        """Where the clock (on `calendar`'s business time, or None: the
        calendar clock) starts for an event at `start`: there, or with
        `from_end_of_day` the end of that local day; None when that is after
        the calendars (a stored time written before command times were
        limited). Before them no business time passes, so no shift."""
        if not self.from_end_of_day:
            return start
        if calendar is None:
            assert self.timezone is not None  # _consistent
            try:
                return _end_of_day(start, self.timezone)
            except (OverflowError, ValueError):
                return None  # the last day there is: never due
        if start.year > LAST_BUSINESS_YEAR + 1:
            return None
        if start.year < FIRST_BUSINESS_YEAR - 1:
            return start
        return calendar.end_of_day(start)

    def _counting(
        self,
        start: datetime,
        paused: list[tuple[datetime, datetime]],
        calendar: WorkingCalendar | None,
        end: datetime = _NEVER,
    ) -> tuple[datetime, list[tuple[datetime, datetime]]] | None:
        """Where this policy's clock starts for an event at `start`
        (`_counted_from`), with the pauses it counts from there up to `end`:
        none on a policy that does not pause. None when it never starts."""
        if not self.pause_on_await:
            paused = []
        counted_from = self._counted_from(start, calendar)
        if counted_from is None:
            return None
        if counted_from != start:
            paused = _paused_intervals(paused, counted_from, max(end, counted_from))
        return counted_from, paused

    def targets_for(self, severity: Severity) -> Targets:
        return self.targets[severity]

    def elapsed(
        self,
        start: datetime,
        end: datetime,
        pauses: Sequence[Pause] = (),
        *,
        acknowledging: bool = False,
    ) -> timedelta:
        """SLA time from `start` to `end` on this policy's clock, minus the parts
        of `pauses` inside that window (each paused moment counted once).
        With `acknowledging`, on the acknowledgement's clock: business time
        where the policy counts it there (`acknowledge_on_business_clock`).

        With `from_end_of_day`, counted from the end of the day `start`
        falls on, as deadlines are: the time at a deadline is its target.
        On a business clock, time outside the calendars is not business time.
        They are built for `FIRST_BUSINESS_YEAR` to `LAST_BUSINESS_YEAR` and
        a year on either side (a local year differs from UTC's by at most
        one). Commands refuse times outside those years, but a store written
        before they did may hold one, and its reports must still be read."""
        start = _utc(start, "start")
        end = _utc(end, "end")
        if end < start:
            end = start
        # Pauses are checked (each a well-formed interval) whether or not
        # this policy counts them.
        calendar = self._business_calendar(acknowledging)
        counting = self._counting(
            start,
            _paused_intervals(pauses, start, end) if pauses else [],
            calendar,
            end,
        )
        if counting is None:
            return _ZERO  # after the calendars: no business time passes
        start, paused = counting
        end = max(end, start)
        if calendar is None:
            wall = _Wall(self.timezone)
            total = wall.between(start, end)
            for pause_start, pause_end in paused:
                total -= wall.between(pause_start, pause_end)
            return total
        if end == start:
            return _ZERO
        key = _calendar_key(calendar)
        amount = _business_between(key, start, end)
        for pause_start, pause_end in paused:
            amount -= _business_between(key, pause_start, pause_end)
        return timedelta(microseconds=amount)

    def deadline(
        self,
        start: datetime,
        duration: timedelta,
        pauses: Sequence[Pause] = (),
        *,
        acknowledging: bool = False,
    ) -> datetime | None:
        """The instant at which `duration` of SLA time has passed since `start`;
        with `acknowledging`, the acknowledgement's deadline, on business time
        where the policy counts it there (`acknowledge_on_business_clock`).

        None while a pause that is still open began before then (on a policy
        that pauses): the clock stands still, so no deadline can be named
        until the customer answers. With `from_end_of_day`, counted from the
        end of the day `start` falls on.
        None too on a business clock when it would fall after the calendars
        end: no business time passes after them (see `elapsed`).
        """
        start = _utc(start, "start")
        if duration < _ZERO:
            raise ValueError(f"duration must not be negative, got {duration}")
        paused = _paused_intervals(pauses, start) if pauses else []
        if not duration:
            return start
        calendar = self._business_calendar(acknowledging)
        counting = self._counting(start, paused, calendar)
        if counting is None:
            return None  # after the calendars: never due
        start, paused = counting
        if calendar is None:
            wall = _Wall(self.timezone)
            moment = start
            remaining = duration
            try:
                for pause_start, pause_end in paused:
                    running = wall.between(moment, pause_start)
                    if remaining <= running:
                        return wall.after(moment, remaining)
                    if pause_end == _NEVER:
                        return None
                    remaining -= running
                    moment = pause_end
                return wall.after(moment, remaining)
            except OverflowError:  # after the last date there is: never due
                return None
        key = _calendar_key(calendar)
        moment = start
        amount = _whole_microseconds(duration)
        for pause_start, pause_end in paused:
            due = _business_add(key, moment, amount)
            if due is not None and due <= pause_start:
                return due
            if pause_end == _NEVER:
                return None
            amount -= _business_between(key, moment, pause_start)
            moment = pause_end
        return _business_add(key, moment, amount)


@dataclass(frozen=True, slots=True)
class _Wall:
    """Calendar time as a policy's clock counts it: real time, or, where the
    policy names a `timezone` (its days end at local midnight), the local
    wall clock's, so that a deadline counted in days from a midnight falls on
    a midnight across a change of the clocks, not an hour either side.

    The wall clock is read so that it never runs backwards: the first
    instant of a day reads as its midnight (where the clocks change at
    midnight, 00:00 never shows), and through the second pass of an hour the
    clocks repeat it stands still where the first pass ended. A time the
    clocks skip is reached when they jump. So a deadline is the first instant
    its time has passed, and later for a longer target."""

    timezone: str | None

    def reading(self, instant: datetime) -> datetime:
        if self.timezone is None:
            return instant
        zone = ZoneInfo(self.timezone)
        try:
            local = instant.astimezone(zone)
        except OverflowError:  # past the last date there is, in that zone
            return instant.replace(tzinfo=None)
        naive = local.replace(tzinfo=None)
        if local.fold:
            # The second pass of a repeated hour: the clock stands still where
            # the first pass ended, so the day it belongs to ends at its real
            # end (a 25-hour day), and the hour is counted once.
            ended = self._first(instant, lambda at: not at.fold)
            return self.reading(ended) - _MICROSECOND
        # A day's first instant, after a jump over midnight (at most a couple
        # of hours anywhere), reads as its midnight.
        if _MIDNIGHT < naive.time() <= _LATEST_DAY_START and _local_instant(
            naive.date(), _MIDNIGHT, zone
        ) == _microseconds(instant):
            return datetime.combine(naive.date(), _MIDNIGHT)
        return naive

    def between(self, start: datetime, end: datetime) -> timedelta:
        return self.reading(end) - self.reading(start)

    def after(self, start: datetime, duration: timedelta) -> datetime:
        """The first instant at which `duration` has passed since `start`."""
        if self.timezone is None:
            return start + duration
        zone = ZoneInfo(self.timezone)
        target = self.reading(start) + duration
        first = target.replace(tzinfo=zone).astimezone(UTC)
        if self.reading(first) == target:
            return first
        # Skipped by the clocks, in a repeated hour's second pass, or a day's
        # first instant read as its midnight: the first instant whose reading
        # has reached it lies within a day either side (the largest jumps,
        # across the date line, are a day).
        return self._first(
            first - _HOUR * 26,
            lambda at: self.reading(at.astimezone(UTC)) >= target,
            first + _HOUR * 26,
        )

    def _first(
        self,
        start: datetime,
        holds: Callable[[datetime], bool],
        end: datetime | None = None,
    ) -> datetime:
        """The first instant from `start` at which `holds` (read in the zone)
        does, found by halving: within the day a change of the clocks spans
        at most, to the microsecond."""
        zone = ZoneInfo(self.timezone or "UTC")
        low = start
        high = end if end is not None else start + _HOUR * 26
        while high - low > _MICROSECOND:
            middle = low + (high - low) / 2
            if holds(middle.astimezone(zone)):
                high = middle
            else:
                low = middle
        return high.astimezone(UTC)


class PolicySchedule(BaseModel):
    """Which policy was in force when, so old complaints keep the rules they
    were promised under after a policy changes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entries: tuple[tuple[Instant, SlaPolicy], ...]
    """(in force from, policy), earliest first."""

    @field_validator("entries")
    @classmethod
    def _sorted_and_not_empty(
        cls, value: tuple[tuple[datetime, SlaPolicy], ...]
    ) -> tuple[tuple[datetime, SlaPolicy], ...]:
        if not value:
            raise ValueError("a schedule needs at least one policy")
        for (earlier, _), (later, policy) in pairwise(value):
            if later <= earlier:
                raise ValueError(
                    f"entries must be in increasing time order: {policy.name} "
                    f"from {later.isoformat()} does not follow {earlier.isoformat()}"
                )
        seen: dict[tuple[str, int], SlaPolicy] = {}
        for _, policy in value:
            key = (policy.name, policy.version)
            if seen.setdefault(key, policy) != policy:
                # Views and reports name a complaint's policy by name and version.
                raise ValueError(
                    f"two different policies are both {policy.name} version "
                    f"{policy.version}: give the changed one a new version"
                )
        return value

    def in_force(self, at: datetime) -> SlaPolicy:
        """The policy in force at `at`; the first one for anything earlier."""
        at = _utc(at, "at")
        index = bisect_right(self.entries, at, key=_entry_start) - 1
        return self.entries[max(index, 0)][1]

    @classmethod
    def always(cls, policy: SlaPolicy) -> PolicySchedule:
        """One policy for all time, from the earliest instant there is."""
        return cls(entries=((datetime.min.replace(tzinfo=UTC), policy),))


def _entry_start(entry: tuple[datetime, SlaPolicy]) -> datetime:
    return entry[0]


# ---------------------------------------------------------------------------
# Presets


def _for_every_severity(targets: Targets) -> dict[Severity, Targets]:
    return dict.fromkeys(Severity, targets)


PRESETS: dict[str, SlaPolicy] = {
    policy.name: policy
    for policy in (
        SlaPolicy(
            name="promise_keeping",
            targets=_for_every_severity(
                Targets(acknowledge_within=24 * _HOUR, update_every=24 * _HOUR)
            ),
            description=(
                "amends' default, no regulator's: answer within 24 hours, give an "
                "update at least every 24 hours, and keep the due date promised in "
                "the plan ('I will get back to you within 24 hours'). No overall "
                "resolution target: the plan's due date is the promise."
            ),
        ),
        SlaPolicy(
            name="fca_disp",
            version=3,
            pause_on_await=False,
            from_end_of_day=True,
            timezone="Europe/London",
            targets=_for_every_severity(
                Targets(acknowledge_within=1 * _DAY, resolve_within=56 * _DAY)
            ),
            description=(
                "UK FCA Handbook DISP 1.6: a prompt written acknowledgement "
                "(DISP 1.6.1R; 'prompt' has no figure, by the end of the next "
                "day is our reading), then keep the complainant informed (no "
                "interval is named, so no update cadence is set), and a final or "
                "holding response by the end of eight weeks (56 days) after "
                "receipt (DISP 1.6.2R): days end at midnight, London time. The "
                "summary resolution route for complaints closed by the end of the "
                "third business day (DISP 1.5) is not modelled. Waiting on the "
                "customer does not stop the clock: the rule counts from receipt."
            ),
        ),
        SlaPolicy(
            name="fca_disp_payments",
            version=2,
            clock="business",
            pause_on_await=False,
            from_end_of_day=True,
            calendar=WorkingCalendar(
                country="GB", subdivision="ENG", timezone="Europe/London"
            ),
            targets=_for_every_severity(
                Targets(acknowledge_within=1 * _DAY, resolve_within=15 * _DAY)
            ),
            description=(
                "UK FCA DISP 1.6.2AR, payment services and e-money complaints: a "
                "final response by the end of 15 business days after the day of "
                "receipt, counted on England and Wales bank holidays (use "
                "subdivision SCT or NIR for complaints handled there). "
                "Acknowledgement by the end of the next business day is our "
                "reading of DISP 1.6.1R's 'prompt'. Waiting on the customer does "
                "not stop the clock. Not modelled: the exceptional case of a "
                "holding response and a final response within 35 business days."
            ),
        ),
        SlaPolicy(
            name="asic_rg271",
            version=4,
            pause_on_await=False,
            from_end_of_day=True,
            timezone="Australia/Sydney",
            acknowledge_on_business_clock=True,
            calendar=WorkingCalendar(
                country="AU", subdivision="NSW", timezone="Australia/Sydney"
            ),
            targets=_for_every_severity(
                Targets(acknowledge_within=1 * _DAY, resolve_within=30 * _DAY)
            ),
            description=(
                "Australia ASIC Regulatory Guide 271 (RG 271, internal dispute "
                "resolution): acknowledge within 24 hours or one business day, "
                "measured as the later of the two, which is by the end of the "
                "next business day after the day of receipt (weekends and NSW "
                "public holidays are not business days); final IDR response "
                "within 30 calendar days of receipt, by the end of the "
                "thirtieth: days end at midnight, Sydney time (make a policy of "
                "your own for another state's). Waiting on the customer does "
                "not stop the clock. Not modelled: 45 days for superannuation "
                "trustees and 21 days for complaints about default notices and "
                "financial difficulty."
            ),
        ),
        SlaPolicy(
            name="cfpb",
            version=3,
            pause_on_await=False,
            from_end_of_day=True,
            timezone="America/New_York",
            targets=_for_every_severity(
                Targets(acknowledge_within=15 * _DAY, resolve_within=60 * _DAY)
            ),
            description=(
                "US CFPB consumer complaint process: the company responds within "
                "15 calendar days (counted here as the acknowledgement) and gives "
                "its final response within 60 calendar days, each by the end of "
                "its last day: days end at midnight, Eastern time (make a policy "
                "of your own for another zone). Waiting on the customer does not "
                "stop the clock."
            ),
        ),
    )
}
"""Policies ready to use, by name; every severity gets the same figures."""

DEFAULT_POLICY_NAME = "promise_keeping"


def preset(name: str) -> SlaPolicy:
    """A preset by name; an unknown name is refused with the known ones listed."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown SLA preset {name!r}; known presets: {', '.join(sorted(PRESETS))}"
        ) from None
