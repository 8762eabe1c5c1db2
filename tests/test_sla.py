"""SLA policies: working calendars, pausable clocks, deadlines and presets.

Unit tests pin real dates (Easter and the clock changes of 2026 in England);
properties check the rules that must hold for every start, duration and pause
list on both kinds of clock.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from amends.domain import sla
from amends.domain.sla import (
    DEFAULT_POLICY_NAME,
    PRESETS,
    PolicySchedule,
    SlaPolicy,
    Targets,
    WorkingCalendar,
    preset,
)
from amends.domain.stages import Severity

LONDON = ZoneInfo("Europe/London")
SYDNEY = ZoneInfo("Australia/Sydney")
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
MICROSECOND = timedelta(microseconds=1)

OFFICE = WorkingCalendar(
    country="GB",
    subdivision="ENG",
    timezone="Europe/London",
    working_hours=(time(9), time(17)),
)
"""An office in England open 09:00 to 17:00 local time."""


def london(year: int, month: int, day: int, hour: int = 0) -> datetime:
    """A London wall-clock time as the UTC instant the API takes."""
    return datetime(year, month, day, hour, tzinfo=LONDON).astimezone(UTC)


def every_severity(targets: Targets) -> dict[Severity, Targets]:
    return dict.fromkeys(Severity, targets)


OFFICE_POLICY = SlaPolicy(
    name="office_hours",
    clock="business",
    calendar=OFFICE,
    targets=every_severity(Targets(resolve_within=40 * HOUR)),
)
NEW_YORK_POLICY = SlaPolicy(
    name="new_york_office",
    clock="business",
    calendar=WorkingCalendar(
        country="US",
        subdivision="NY",
        timezone="America/New_York",
        working_hours=(time(8, 30), time(18)),
    ),
    targets=every_severity(Targets(resolve_within=10 * HOUR)),
)


# ---------------------------------------------------------------------------
# Working calendars


def test_easter_2026_is_not_a_business_day_in_england() -> None:
    assert OFFICE.is_business_day(date(2026, 4, 2))  # Maundy Thursday
    assert not OFFICE.is_business_day(date(2026, 4, 3))  # Good Friday
    assert not OFFICE.is_business_day(date(2026, 4, 4))  # Saturday
    assert not OFFICE.is_business_day(date(2026, 4, 6))  # Easter Monday
    assert OFFICE.is_business_day(date(2026, 4, 7))


def test_easter_monday_is_a_business_day_in_scotland() -> None:
    scotland = WorkingCalendar(country="GB", subdivision="SCT")
    assert not scotland.is_business_day(date(2026, 4, 3))
    assert scotland.is_business_day(date(2026, 4, 6))


def test_add_skips_the_easter_weekend() -> None:
    thursday_late = london(2026, 4, 2, 16)
    assert OFFICE.add(thursday_late, 2 * HOUR) == london(2026, 4, 7, 10)


def test_elapsed_skips_the_easter_weekend() -> None:
    # Thursday 2 April and Tuesday 7 April: two working days of eight hours.
    assert OFFICE.elapsed(london(2026, 4, 2, 9), london(2026, 4, 7, 17)) == 16 * HOUR
    assert OFFICE.elapsed(london(2026, 4, 2, 17), london(2026, 4, 7, 9)) == timedelta()


def test_whole_day_calendar_skips_easter() -> None:
    payments = preset("fca_disp_payments")
    thursday_noon = london(2026, 4, 2, 12)
    # Counted from the end of Thursday: Good Friday and Easter Monday are
    # holidays, so the one business day is Tuesday, ending at its midnight.
    assert payments.deadline(thursday_noon, DAY) == london(2026, 4, 8, 0)
    assert WHOLE_DAYS_POLICY.deadline(thursday_noon, DAY) == london(2026, 4, 7, 12)
    # Thursday afternoon, Tuesday and Wednesday morning: two whole days;
    # counted from the end of Thursday, a day and a half.
    wednesday_noon = london(2026, 4, 8, 12)
    assert WHOLE_DAYS_POLICY.elapsed(thursday_noon, wednesday_noon) == 2 * DAY
    assert payments.elapsed(thursday_noon, wednesday_noon) == DAY + DAY / 2


def test_friday_afternoon_plus_two_working_hours_is_monday_morning() -> None:
    friday = london(2026, 1, 9, 16)
    due = OFFICE.add(friday, 2 * HOUR)
    assert due == london(2026, 1, 12, 10)
    assert due.tzinfo is UTC
    assert OFFICE.elapsed(friday, due) == 2 * HOUR


def test_working_hours_follow_the_local_clock_across_the_spring_change() -> None:
    # Clocks go forward on Sunday 29 March 2026: 16:00 GMT Friday, 10:00 BST Monday.
    friday = london(2026, 3, 27, 16)
    assert friday == datetime(2026, 3, 27, 16, tzinfo=UTC)
    due = OFFICE.add(friday, 2 * HOUR)
    assert due == london(2026, 3, 30, 10) == datetime(2026, 3, 30, 9, tzinfo=UTC)
    assert (
        OFFICE.elapsed(london(2026, 3, 27, 17), london(2026, 3, 30, 9)) == timedelta()
    )
    assert OFFICE.elapsed(london(2026, 3, 30, 9), london(2026, 3, 30, 17)) == 8 * HOUR


def test_working_hours_follow_the_local_clock_across_the_autumn_change() -> None:
    # Clocks go back on Sunday 25 October 2026.
    friday = london(2026, 10, 23, 16)
    assert friday == datetime(2026, 10, 23, 15, tzinfo=UTC)
    assert OFFICE.add(friday, 2 * HOUR) == datetime(2026, 10, 26, 10, tzinfo=UTC)


def test_whole_business_day_spans_the_clock_change_weekend() -> None:
    payments = preset("fca_disp_payments")
    friday_noon = london(2026, 3, 27, 12)
    assert payments.deadline(friday_noon, DAY) == london(2026, 3, 31, 0)
    assert WHOLE_DAYS_POLICY.deadline(friday_noon, DAY) == london(2026, 3, 30, 12)
    monday_noon = london(2026, 3, 30, 12)
    assert WHOLE_DAYS_POLICY.elapsed(friday_noon, monday_noon) == DAY
    assert payments.elapsed(friday_noon, monday_noon) == DAY / 2


def test_zero_duration_is_due_at_once_even_outside_hours() -> None:
    saturday = london(2026, 1, 10, 3)
    assert OFFICE.add(saturday, timedelta()) == saturday
    assert OFFICE_POLICY.deadline(saturday, timedelta()) == saturday


def test_elapsed_is_zero_when_end_is_not_after_start() -> None:
    monday = london(2026, 1, 12, 10)
    assert OFFICE.elapsed(monday, monday - HOUR) == timedelta()
    assert OFFICE_POLICY.elapsed(monday, monday - HOUR) == timedelta()
    assert preset("cfpb").elapsed(monday, monday - HOUR) == timedelta()


def test_a_calendar_is_refused_when_wrongly_configured() -> None:
    with pytest.raises(ValueError, match="ZZ"):
        WorkingCalendar(country="ZZ")
    with pytest.raises(ValueError, match="XX"):
        WorkingCalendar(country="GB", subdivision="XX")
    with pytest.raises(ValueError, match="Mars/Olympus"):
        WorkingCalendar(country="GB", timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="before"):
        WorkingCalendar(country="GB", working_hours=(time(17), time(9)))
    # An empty subdivision silently meant none: the whole country's holidays.
    with pytest.raises(ValueError, match="subdivision"):
        WorkingCalendar(country="GB", subdivision="")


@pytest.mark.parametrize(
    ("country", "zone", "off", "working"),
    [
        # Friday and Saturday off; Sunday a working day.
        ("IL", "Asia/Jerusalem", date(2024, 6, 7), date(2024, 6, 9)),
        ("EG", "Africa/Cairo", date(2024, 5, 31), date(2024, 6, 2)),
        # Saturday and Sunday, as everywhere amends assumed before.
        ("GB", "Europe/London", date(2024, 6, 8), date(2024, 6, 7)),
    ],
)
def test_a_countrys_own_weekend_is_not_business_time(
    country: str, zone: str, off: date, working: date
) -> None:
    """Saturday and Sunday were taken as the weekend everywhere: in Israel a
    Friday counted as a business day and a Sunday as none, so two business
    hours from Thursday 16:00 ended on Friday."""
    calendar = WorkingCalendar(
        country=country, timezone=zone, working_hours=(time(9), time(17))
    )
    assert not calendar.is_business_day(off)
    assert calendar.is_business_day(working)
    day_before = off - timedelta(days=1)
    if calendar.is_business_day(day_before):
        start = datetime.combine(day_before, time(16), tzinfo=ZoneInfo(zone))
        ends = calendar.add(start, 2 * HOUR).astimezone(ZoneInfo(zone))
        assert calendar.is_business_day(ends.date())
        assert ends.date() > off


def test_holiday_lookups_are_cached_per_year() -> None:
    calendar = WorkingCalendar(country="FR", timezone="Europe/Paris")
    start = datetime(2027, 2, 1, tzinfo=UTC)
    calendar.elapsed(start, start + 365 * DAY)
    before = sla._working_days.cache_info()
    for _ in range(50):
        calendar.elapsed(start, start + 365 * DAY)
        calendar.add(start, 200 * DAY)
    after = sla._working_days.cache_info()
    assert after.misses == before.misses
    assert after.currsize >= 2  # at least one entry per year spanned


# ---------------------------------------------------------------------------
# Naive datetimes and bad arguments


def test_naive_datetimes_are_refused_naming_the_argument() -> None:
    naive = datetime(2026, 1, 12, 10)
    aware = naive.replace(tzinfo=UTC)
    policy = preset(DEFAULT_POLICY_NAME)
    with pytest.raises(ValueError, match="start"):
        OFFICE.elapsed(naive, aware)
    with pytest.raises(ValueError, match="end"):
        OFFICE.elapsed(aware, naive)
    with pytest.raises(ValueError, match="start"):
        OFFICE.add(naive, HOUR)
    with pytest.raises(ValueError, match="end"):
        policy.elapsed(aware, naive)
    with pytest.raises(ValueError, match=r"pauses\[1\] start"):
        policy.elapsed(aware, aware + DAY, [(aware, None), (naive, None)])
    with pytest.raises(ValueError, match=r"pauses\[0\] end"):
        policy.deadline(aware, HOUR, [(aware, naive)])
    with pytest.raises(ValueError, match="at"):
        PolicySchedule.always(policy).in_force(naive)


def test_other_zones_are_converted_to_utc() -> None:
    policy = preset(DEFAULT_POLICY_NAME)
    start = datetime(2026, 7, 1, 9, tzinfo=LONDON)
    due = policy.deadline(start, HOUR)
    assert due == datetime(2026, 7, 1, 9, tzinfo=UTC)
    assert due is not None
    assert due.tzinfo is UTC


def test_negative_durations_and_backward_pauses_are_refused() -> None:
    policy = preset(DEFAULT_POLICY_NAME)
    start = datetime(2026, 1, 12, tzinfo=UTC)
    with pytest.raises(ValueError, match="negative"):
        policy.deadline(start, -HOUR)
    with pytest.raises(ValueError, match="negative"):
        OFFICE.add(start, -HOUR)
    with pytest.raises(ValueError, match="before it begins"):
        policy.elapsed(start, start + DAY, [(start + HOUR, start)])


# ---------------------------------------------------------------------------
# Pauses and deadlines, by example


def test_overlapping_pauses_count_once() -> None:
    policy = preset(DEFAULT_POLICY_NAME)
    start = datetime(2026, 1, 12, tzinfo=UTC)
    pauses = [
        (start + HOUR, start + 5 * HOUR),
        (start + 3 * HOUR, start + 8 * HOUR),
        (start - DAY, start + 30 * MICROSECOND),  # began before the window
        (start + 2 * DAY, None),  # after the window, still open
    ]
    assert (
        policy.elapsed(start, start + DAY, pauses) == DAY - 7 * HOUR - 30 * MICROSECOND
    )


def test_open_pause_before_the_deadline_leaves_no_deadline() -> None:
    policy = preset(DEFAULT_POLICY_NAME)
    start = datetime(2026, 1, 12, tzinfo=UTC)
    assert policy.deadline(start, DAY, [(start + HOUR, None)]) is None
    assert policy.deadline(start, DAY, [(start + DAY, None)]) == start + DAY
    closed = [(start + HOUR, start + 3 * HOUR)]
    assert policy.deadline(start, DAY, closed) == start + DAY + 2 * HOUR


def test_business_pauses_only_cost_business_time() -> None:
    monday = london(2026, 1, 12, 9)
    # Paused from Monday 16:00 to Tuesday 10:00: two working hours lost.
    pauses = [(london(2026, 1, 12, 16), london(2026, 1, 13, 10))]
    assert OFFICE_POLICY.elapsed(monday, london(2026, 1, 13, 17), pauses) == 14 * HOUR
    assert OFFICE_POLICY.deadline(monday, 8 * HOUR, pauses) == london(2026, 1, 13, 11)


# ---------------------------------------------------------------------------
# Policies and presets


def test_presets_carry_the_regulatory_figures() -> None:
    assert DEFAULT_POLICY_NAME == "promise_keeping"
    assert set(PRESETS) == {
        "promise_keeping",
        "fca_disp",
        "fca_disp_payments",
        "asic_rg271",
        "cfpb",
    }
    expected = {
        "promise_keeping": Targets(
            acknowledge_within=24 * HOUR, update_every=24 * HOUR
        ),
        "fca_disp": Targets(acknowledge_within=24 * HOUR, resolve_within=56 * DAY),
        "fca_disp_payments": Targets(acknowledge_within=DAY, resolve_within=15 * DAY),
        "asic_rg271": Targets(acknowledge_within=24 * HOUR, resolve_within=30 * DAY),
        "cfpb": Targets(acknowledge_within=15 * DAY, resolve_within=60 * DAY),
    }
    for name, targets in expected.items():
        policy = preset(name)
        assert policy.name == name
        assert policy.keep_plan_due
        assert policy.description
        for severity in Severity:
            assert policy.targets_for(severity) == targets
    for name in ("promise_keeping", "fca_disp", "asic_rg271", "cfpb"):
        assert preset(name).clock == "calendar"
    payments = preset("fca_disp_payments")
    assert payments.clock == "business"
    assert payments.calendar == WorkingCalendar(
        country="GB", subdivision="ENG", timezone="Europe/London"
    )
    # RG 271's acknowledgement alone counts in NSW business days.
    asic = preset("asic_rg271")
    assert asic.version == 4
    assert asic.acknowledge_on_business_clock
    assert asic.calendar == WorkingCalendar(
        country="AU", subdivision="NSW", timezone="Australia/Sydney"
    )
    assert [n for n, p in PRESETS.items() if p.acknowledge_on_business_clock] == [
        "asic_rg271"
    ]


def test_preset_descriptions_name_their_source_and_gaps() -> None:
    assert "DISP 1.6" in preset("fca_disp").description
    assert "our reading" in preset("fca_disp").description
    assert "no interval" in preset("fca_disp").description
    assert "DISP 1.6.2A" in preset("fca_disp_payments").description
    assert "35" in preset("fca_disp_payments").description
    assert "RG 271" in preset("asic_rg271").description
    assert "later of the two" in preset("asic_rg271").description
    assert "next business day" in preset("asic_rg271").description
    assert "45" in preset("asic_rg271").description
    assert "21" in preset("asic_rg271").description
    assert "CFPB" in preset("cfpb").description


def test_only_the_teams_own_promises_wait_for_the_customer() -> None:
    assert preset("promise_keeping").pause_on_await
    for name in ("fca_disp", "fca_disp_payments", "asic_rg271", "cfpb"):
        assert not preset(name).pause_on_await, name
        assert "does not stop the clock" in preset(name).description, name


@pytest.mark.parametrize("number", [24, 30.0])
def test_a_target_given_as_a_bare_number_is_refused_not_read_as_seconds(
    number: float,
) -> None:
    """`Targets(resolve_within=30)`, meant as days, was 30 seconds: the
    policy was accepted and every complaint breached."""
    with pytest.raises(ValidationError, match="not the bare number"):
        Targets(resolve_within=number)
    assert Targets(resolve_within="P30D").resolve_within == 30 * DAY


def test_counting_from_the_end_of_the_day_needs_to_know_where_a_day_ends() -> None:
    with pytest.raises(ValidationError, match="from_end_of_day on a calendar clock"):
        SlaPolicy(
            name="x",
            targets=dict.fromkeys(Severity, Targets(resolve_within=DAY)),
            from_end_of_day=True,
        )


def test_unknown_preset_is_refused_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match="nope") as refusal:
        preset("nope")
    for name in PRESETS:
        assert name in str(refusal.value)


def test_presets_survive_a_json_round_trip() -> None:
    for policy in [*PRESETS.values(), OFFICE_POLICY, NEW_YORK_POLICY]:
        assert SlaPolicy.model_validate_json(policy.model_dump_json()) == policy


def test_a_policy_missing_a_severity_is_refused() -> None:
    targets = every_severity(Targets(resolve_within=DAY))
    del targets[Severity.URGENT]
    with pytest.raises(ValidationError, match="urgent"):
        SlaPolicy(name="partial", targets=targets)


def test_a_business_clock_needs_a_calendar_and_only_it_uses_one() -> None:
    targets = every_severity(Targets(resolve_within=DAY))
    with pytest.raises(ValidationError, match="working calendar"):
        SlaPolicy(name="b", clock="business", targets=targets)
    with pytest.raises(ValidationError, match="clock='business'"):
        SlaPolicy(name="c", calendar=OFFICE, targets=targets)


def test_targets_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="positive"):
        Targets(update_every=timedelta())


def test_policies_are_frozen() -> None:
    policy = preset(DEFAULT_POLICY_NAME)
    with pytest.raises(ValidationError):
        policy.name = "changed"  # type: ignore[misc]


# ---------------------------------------------------------------------------
# Schedules


def test_schedule_names_the_policy_in_force() -> None:
    first, second = preset("fca_disp"), preset("fca_disp_payments")
    switch = datetime(2026, 6, 1, tzinfo=UTC)
    schedule = PolicySchedule(
        entries=((datetime(2026, 1, 1, tzinfo=UTC), first), (switch, second))
    )
    assert schedule.in_force(datetime(2020, 1, 1, tzinfo=UTC)) is first
    assert schedule.in_force(switch - MICROSECOND) is first
    assert schedule.in_force(switch) is second
    assert schedule.in_force(switch.astimezone(LONDON)) is second
    assert schedule.in_force(datetime(2030, 1, 1, tzinfo=UTC)) is second
    always = PolicySchedule.always(first)
    assert always.in_force(datetime(1999, 1, 1, tzinfo=UTC)) is first


def test_schedule_must_be_sorted_and_not_empty() -> None:
    policy = preset(DEFAULT_POLICY_NAME)
    later = datetime(2026, 6, 1, tzinfo=UTC)
    with pytest.raises(ValidationError, match="at least one"):
        PolicySchedule(entries=())
    with pytest.raises(ValidationError, match="increasing"):
        PolicySchedule(entries=((later, policy), (later - DAY, policy)))
    with pytest.raises(ValidationError, match="increasing"):
        PolicySchedule(entries=((later, policy), (later, policy)))
    with pytest.raises(ValidationError):
        PolicySchedule(entries=((datetime(2026, 1, 1), policy),))


# ---------------------------------------------------------------------------
# Properties

WHOLE_DAYS_POLICY = preset("fca_disp_payments").model_copy(
    update={"name": "whole_days", "pause_on_await": True, "from_end_of_day": False}
)
"""Whole business days from the instant, pausing: what the payments preset
was before it followed its rule."""
OFFICE_FROM_END_OF_DAY = OFFICE_POLICY.model_copy(
    update={"name": "office_eod", "from_end_of_day": True}
)
"""Working hours counted from the end of the day, pausing."""
POLICIES = [preset(DEFAULT_POLICY_NAME), preset("fca_disp_payments"), OFFICE_POLICY]
BUSINESS_POLICIES = [
    preset("fca_disp_payments"),
    OFFICE_POLICY,
    NEW_YORK_POLICY,
    WHOLE_DAYS_POLICY,
    OFFICE_FROM_END_OF_DAY,
]

policies = st.sampled_from(
    [*POLICIES, NEW_YORK_POLICY, WHOLE_DAYS_POLICY, OFFICE_FROM_END_OF_DAY]
)


def origin(policy: SlaPolicy, start: datetime) -> datetime:
    """Where the policy starts counting a deadline begun at `start`."""
    if policy.from_end_of_day:
        assert policy.calendar is not None
        return policy.calendar.end_of_day(start)
    return start


instants = st.datetimes(
    min_value=datetime(2020, 1, 1),
    max_value=datetime(2030, 12, 31),
    timezones=st.just(UTC),
)
spans = st.one_of(
    st.timedeltas(min_value=timedelta(), max_value=12 * HOUR),
    st.timedeltas(min_value=timedelta(), max_value=60 * DAY),
)
durations = st.one_of(
    st.just(timedelta()),
    st.timedeltas(min_value=MICROSECOND, max_value=10 * HOUR),
    st.timedeltas(min_value=MICROSECOND, max_value=40 * DAY),
)
PauseList = list[tuple[datetime, datetime | None]]


@st.composite
def pause_lists(draw: st.DrawFn, around: datetime) -> PauseList:
    """Pauses near `around`: before, across and after it, overlapping, some open."""
    pauses: PauseList = []
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        begins = around + draw(st.timedeltas(min_value=-5 * DAY, max_value=50 * DAY))
        if draw(st.integers(min_value=0, max_value=4)) == 0:
            pauses.append((begins, None))
        else:
            pauses.append((begins, begins + draw(spans)))
    return pauses


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[SlaPolicy, datetime, PauseList]:
    start = draw(instants)
    return draw(policies), start, draw(pause_lists(start))


@settings(max_examples=150)
@given(scenarios(), spans)
def test_elapsed_is_never_negative_nor_more_than_the_wall_clock(
    scenario: tuple[SlaPolicy, datetime, PauseList], span: timedelta
) -> None:
    policy, start, pauses = scenario
    end = start + span
    elapsed = policy.elapsed(start, end, pauses)
    assert timedelta() <= elapsed <= span
    assert policy.elapsed(end, start, pauses) == timedelta()


@settings(max_examples=150)
@given(scenarios(), spans, spans)
def test_elapsed_is_additive(
    scenario: tuple[SlaPolicy, datetime, PauseList], first: timedelta, second: timedelta
) -> None:
    """The measure is additive. A policy counting from the end of the day
    starts it there for each event, so it is checked without that."""
    policy, a, pauses = scenario
    policy = policy.model_copy(update={"from_end_of_day": False})
    b = a + first
    c = b + second
    assert policy.elapsed(a, c, pauses) == policy.elapsed(
        a, b, pauses
    ) + policy.elapsed(b, c, pauses)


@settings(max_examples=150)
@given(scenarios(), spans, st.data())
def test_pauses_never_increase_elapsed(
    scenario: tuple[SlaPolicy, datetime, PauseList],
    span: timedelta,
    data: st.DataObject,
) -> None:
    policy, start, pauses = scenario
    end = start + span
    with_pauses = policy.elapsed(start, end, pauses)
    assert with_pauses <= policy.elapsed(start, end)
    more = pauses + data.draw(pause_lists(start))
    assert policy.elapsed(start, end, more) <= with_pauses


@settings(max_examples=200)
@given(scenarios(), durations)
def test_deadline_round_trips_through_elapsed(
    scenario: tuple[SlaPolicy, datetime, PauseList], duration: timedelta
) -> None:
    policy, start, pauses = scenario
    due = policy.deadline(start, duration, pauses)
    assume(due is not None)
    assert due is not None
    assert due.tzinfo is UTC
    assert due >= start
    # From the instant itself, whatever the policy counts from: the time at
    # a deadline is its target (the reports' SLA column and their breaches
    # agree).
    assert policy.elapsed(start, due, pauses) == duration
    if duration > timedelta():
        assert policy.elapsed(start, due - MICROSECOND, pauses) < duration


@settings(max_examples=200)
@given(scenarios(), durations)
def test_deadline_is_none_exactly_when_an_open_pause_stops_the_clock_first(
    scenario: tuple[SlaPolicy, datetime, PauseList], duration: timedelta
) -> None:
    policy, start, pauses = scenario
    # A policy counting from the end of the day stands still only at a pause
    # open from then on; elapsed counts from there itself.
    begun = origin(policy, start) if duration else start
    open_starts = [max(begins, begun) for begins, ends in pauses if ends is None]
    stopped = (
        policy.pause_on_await
        and bool(open_starts)
        and (policy.elapsed(start, min(open_starts), pauses) < duration)
    )
    assert (policy.deadline(start, duration, pauses) is None) == stopped


@settings(max_examples=150)
@given(scenarios(), durations, spans)
def test_a_policy_that_does_not_pause_never_counts_a_pause(
    scenario: tuple[SlaPolicy, datetime, PauseList],
    duration: timedelta,
    span: timedelta,
) -> None:
    """The regulators' deadlines run from receipt whatever the customer does:
    their presets measure the same with any waits as with none."""
    policy, start, pauses = scenario
    steady = policy.model_copy(update={"pause_on_await": False})
    assert steady.deadline(start, duration, pauses) == steady.deadline(start, duration)
    end = start + span
    assert steady.elapsed(start, end, pauses) == steady.elapsed(start, end)
    assert steady.elapsed(start, end) == policy.elapsed(start, end)


@settings(max_examples=150)
@given(st.sampled_from(BUSINESS_POLICIES), instants, durations)
def test_a_deadline_counted_from_the_end_of_the_day_is_that_of_its_midnight(
    policy: SlaPolicy, start: datetime, duration: timedelta
) -> None:
    """Counted "after the day on which it received the complaint": any time
    that day gives the deadline its ending midnight gives, and never one
    earlier than counting from the instant itself would."""
    assume(duration > timedelta())
    assert policy.calendar is not None
    eod = policy.model_copy(update={"from_end_of_day": True})
    midnight = policy.calendar.end_of_day(start)
    local = midnight.astimezone(ZoneInfo(policy.calendar.timezone))
    assert (local.hour, local.minute) == (0, 0)
    assert midnight > start
    due = eod.deadline(start, duration)
    assert due == eod.deadline(midnight - MICROSECOND, duration)
    plain = policy.model_copy(update={"from_end_of_day": False})
    assert due == plain.deadline(midnight, duration)
    from_the_instant = plain.deadline(start, duration)
    assert due is not None
    assert from_the_instant is not None
    assert due >= from_the_instant


@settings(max_examples=100)
@given(instants, durations)
def test_calendar_deadline_without_pauses_is_start_plus_duration(
    start: datetime, duration: timedelta
) -> None:
    """From the instant, or from the end of its local day for the
    regulators' calendar presets, which count days ("by the end of eight
    weeks after its receipt"): before, they fell due at the hour of receipt,
    a day early at worst, and reported breaches the rule does not."""
    assert preset("promise_keeping").deadline(start, duration) == start + duration
    for name in ("fca_disp", "asic_rg271", "cfpb"):
        policy = preset(name)
        assert policy.timezone is not None
        zone = ZoneInfo(policy.timezone)
        midnight = datetime.combine(
            start.astimezone(zone).date() + timedelta(days=1), time(), tzinfo=zone
        )
        assert midnight > start
        # Days counted on the local wall clock: from a midnight, whole days
        # end on a midnight across a change of the clocks. (In UTC: Python
        # never calls an ambiguous local time equal to another zone's.)
        expected = midnight + duration if duration else start  # nothing to count
        assert policy.deadline(start, duration) == expected.astimezone(UTC)
        if duration >= DAY and duration % DAY == timedelta(0):
            due = policy.deadline(start, duration)
            assert due is not None
            assert due.astimezone(zone).time() == time()


WALL_ZONES = (
    "America/New_York",  # clocks change at 02:00
    "America/Havana",  # at midnight: some days have no 00:00
    "America/Santiago",  # at midnight, southern hemisphere
    "Australia/Lord_Howe",  # by half an hour
    "Europe/London",
)


@functools.cache
def clock_changes(zone: str) -> tuple[datetime, ...]:
    """The instants (UTC, to the quarter hour) the zone's clocks changed in
    2024 to 2026: where wall-clock arithmetic goes wrong, if it does."""
    found = []
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    offset = moment.astimezone(ZoneInfo(zone)).utcoffset()
    while moment.year < 2027:
        moment += timedelta(minutes=15)
        now = moment.astimezone(ZoneInfo(zone)).utcoffset()
        if now != offset:
            found.append(moment)
            offset = now
    return tuple(found)


@st.composite
def near_a_clock_change(draw: st.DrawFn) -> tuple[str, datetime]:
    zone = draw(st.sampled_from(WALL_ZONES))
    change = draw(st.sampled_from(clock_changes(zone)))
    before = draw(st.integers(0, 4 * 24 * 60), label="minutes before")
    return zone, change - timedelta(minutes=before, seconds=draw(st.integers(0, 59)))


@settings(max_examples=500, deadline=None)
@given(
    near=near_a_clock_change(),
    around=st.integers(-150, 150).map(lambda m: timedelta(minutes=m)),
    extra=st.one_of(
        st.integers(0, 180).map(lambda m: timedelta(minutes=m)),
        st.integers(0, 3).map(lambda d: timedelta(days=d)),
    ),
    pause=st.one_of(
        st.none(),
        st.tuples(st.integers(0, 4 * 24), st.integers(1, 3 * 24)).map(
            lambda p: (timedelta(hours=p[0]), timedelta(hours=p[1]))
        ),
    ),
)
def test_a_wall_clock_deadline_is_the_first_instant_its_target_has_passed(
    near: tuple[str, datetime],
    around: timedelta,
    extra: timedelta,
    pause: tuple[timedelta, timedelta] | None,
) -> None:
    """A calendar clock that counts days to local midnight reads the local
    wall clock, across every kind of change of the clocks (at 02:00, at
    midnight, by half an hour) and with a pause: a longer target never falls
    due earlier, the time at a deadline has reached its target, and a moment
    before it has not. Reading the wall clock naively, a time the clocks
    skip resolved past the jump (a 2:30 target due after a 3:00 one), the
    repeated hour ran the clock backwards, and where the clocks change at
    midnight every whole-day deadline fell at 01:00."""
    zone, change = near
    start = change - timedelta(days=2, hours=7)
    policy = SlaPolicy(
        name="wall",
        targets=every_severity(Targets(resolve_within=DAY)),
        from_end_of_day=True,
        timezone=zone,
    )
    pauses: PauseList = []
    if pause is not None:
        pauses = [(start + pause[0], start + pause[0] + pause[1])]
    # A target that falls due around the change of the clocks, or on a
    # midnight next to it (whole days).
    counted_from = policy.deadline(start, MICROSECOND) - MICROSECOND
    short = max(change - counted_from + around, MICROSECOND)
    if around % timedelta(hours=1) == timedelta(0):
        short = max(DAY * round(short / DAY), DAY)
    earlier = policy.deadline(start, short, pauses)
    later = policy.deadline(start, short + extra, pauses)
    assert earlier is not None
    assert later is not None
    assert earlier <= later
    for target, due in ((short, earlier), (short + extra, later)):
        assert policy.elapsed(start, due, pauses) >= target
        assert policy.elapsed(start, due - MICROSECOND, pauses) < target
    if short % DAY == timedelta(0) and not pauses:
        local = earlier.astimezone(ZoneInfo(zone))
        day_start = datetime.combine(local.date(), time(), tzinfo=ZoneInfo(zone))
        assert earlier == day_start.astimezone(UTC)


def test_an_fca_final_response_on_the_last_day_of_eight_weeks_is_in_time() -> None:
    """Received Wednesday 10 January at 15:00, answered Wednesday 6 March at
    18:00: within "the end of eight weeks after its receipt" (DISP 1.6.2R).
    The preset used to call it a breach (due at 15:00 that day)."""
    policy = preset("fca_disp")
    received = datetime(2024, 1, 10, 15, tzinfo=UTC)
    due = policy.deadline(received, policy.targets_for(Severity.NORMAL).resolve_within)
    assert due == datetime(2024, 3, 7, tzinfo=ZoneInfo("Europe/London"))
    assert datetime(2024, 3, 6, 18, tzinfo=UTC) < due


def sydney(*moment: int) -> datetime:
    """A Sydney wall-clock time as the UTC instant the API takes."""
    return datetime(*moment, tzinfo=SYDNEY).astimezone(UTC)


@pytest.mark.parametrize(
    ("received", "due"),
    [
        # Thursday before Easter: Good Friday, the weekend and Easter Monday
        # are no NSW business days, and the clocks go back on Easter Sunday
        # (AEDT to AEST): due at the end of Tuesday, 14:00 UTC.
        (sydney(2026, 4, 2, 16), sydney(2026, 4, 8)),
        # Friday evening: the end of Monday.
        (sydney(2026, 3, 13, 17), sydney(2026, 3, 17)),
        # Saturday, a day before the clocks go forward (Sunday 4 October),
        # Monday 5 October is NSW Labour Day: the end of Tuesday, in AEDT.
        (sydney(2026, 10, 3, 10), sydney(2026, 10, 7)),
        # A weekday: the end of the next day, as before.
        (sydney(2026, 3, 10, 23, 59), sydney(2026, 3, 12)),
    ],
)
def test_rg271_acknowledgement_is_due_at_the_end_of_the_next_nsw_business_day(
    received: datetime, due: datetime
) -> None:
    """RG 271: "within 24 hours or one business day", whichever is later.
    Version 3 counted a calendar day: an acknowledgement on the Tuesday
    after Easter, or on the Monday after a Friday, was a breach."""
    policy = preset("asic_rg271")
    targets = policy.targets_for(Severity.NORMAL)
    assert targets.acknowledge_within is not None
    assert (
        policy.deadline(received, targets.acknowledge_within, acknowledging=True) == due
    )
    assert policy.elapsed(received, due, acknowledging=True) == DAY
    # The final response stays 30 calendar days, by the end of the thirtieth.
    assert targets.resolve_within is not None
    received_day = received.astimezone(SYDNEY).date()
    assert policy.deadline(received, targets.resolve_within) == datetime.combine(
        received_day + 31 * DAY, time(), tzinfo=SYDNEY
    )


@settings(max_examples=300)
@given(instants)
def test_rg271_acknowledgement_ends_a_nsw_business_day_at_least_24_hours_on(
    received: datetime,
) -> None:
    """Always the end of the first NSW business day after the day of
    receipt (weekends and the `holidays` package's NSW public holidays are
    not), Sydney time, and never earlier than 24 hours after receipt: the
    later of RG 271's two readings."""
    policy = preset("asic_rg271")
    due = policy.deadline(received, DAY, acknowledging=True)
    assert due is not None
    assert due >= received + 24 * HOUR
    assert policy.elapsed(received, due, acknowledging=True) == DAY
    local = due.astimezone(SYDNEY)
    assert local.time() == time()
    nsw = holidays.country_holidays("AU", subdiv="NSW")
    received_day = received.astimezone(SYDNEY).date()
    last_day = local.date() - DAY
    days = [received_day + n * DAY for n in range(1, (last_day - received_day).days)]
    assert last_day.weekday() < 5
    assert last_day not in nsw
    assert all(day.weekday() >= 5 or day in nsw for day in days)


def test_acknowledging_on_the_business_clock_is_refused_where_it_cannot_count() -> None:
    targets = every_severity(Targets(acknowledge_within=DAY, resolve_within=30 * DAY))
    with pytest.raises(ValidationError, match="needs a working calendar"):
        SlaPolicy(name="x", targets=targets, acknowledge_on_business_clock=True)
    with pytest.raises(ValidationError, match="is for a calendar clock"):
        SlaPolicy(
            name="x",
            targets=targets,
            clock="business",
            calendar=OFFICE,
            acknowledge_on_business_clock=True,
        )
    with pytest.raises(ValidationError, match="another midnight"):
        SlaPolicy(
            name="x",
            targets=targets,
            from_end_of_day=True,
            timezone="Australia/Sydney",
            calendar=WorkingCalendar(country="AU", subdivision="NSW"),  # UTC days
            acknowledge_on_business_clock=True,
        )
    with pytest.raises(ValidationError, match="acknowledge_on_business_clock"):
        SlaPolicy(name="x", targets=targets, calendar=OFFICE)  # the flag forgotten
    # Without the day's end: business time from the instant of receipt.
    hours = SlaPolicy(
        name="x", targets=targets, calendar=OFFICE, acknowledge_on_business_clock=True
    )
    friday = london(2026, 3, 13, 16)
    assert hours.deadline(friday, 2 * HOUR, acknowledging=True) == london(
        2026, 3, 16, 10
    )
    assert hours.deadline(friday, 2 * HOUR) == friday + 2 * HOUR


def test_an_unset_acknowledgement_clock_is_left_out_of_the_json() -> None:
    """The policies written before it was a field read and fingerprint as
    they did (the views' tracking row names a schedule by its JSON's digest)."""
    for policy in [*PRESETS.values(), OFFICE_POLICY]:
        written = policy.model_dump_json()
        assert ("acknowledge_on_business_clock" in written) == (
            policy.acknowledge_on_business_clock
        )
        assert SlaPolicy.model_validate_json(written) == policy


def test_a_calendar_day_ends_where_the_policy_says() -> None:
    targets = every_severity(Targets(resolve_within=DAY))
    with pytest.raises(ValidationError, match="needs a timezone"):
        SlaPolicy(name="x", targets=targets, from_end_of_day=True)
    with pytest.raises(ValidationError, match="used nowhere else"):
        SlaPolicy(name="x", targets=targets, timezone="Europe/London")
    with pytest.raises(ValidationError, match="unknown IANA time zone"):
        SlaPolicy(name="x", targets=targets, from_end_of_day=True, timezone="Mars")


@settings(max_examples=100)
@given(st.sampled_from(BUSINESS_POLICIES), instants, durations)
def test_business_deadline_lands_inside_business_hours(
    policy: SlaPolicy, start: datetime, duration: timedelta
) -> None:
    assume(duration > timedelta())
    due = policy.deadline(start, duration)
    assert due is not None
    calendar = policy.calendar
    assert calendar is not None
    local = (due - MICROSECOND).astimezone(ZoneInfo(calendar.timezone))
    assert calendar.is_business_day(local.date())
    if calendar.working_hours is not None:
        opens, closes = calendar.working_hours
        assert opens <= local.time() < closes


def reference_business_time(
    calendar: WorkingCalendar, start: datetime, end: datetime
) -> timedelta:
    """Business time the slow, obvious way: one local day at a time."""
    zone = ZoneInfo(calendar.timezone)
    opens, closes = calendar.working_hours or (time(0), time(0))
    total = timedelta()
    day = start.astimezone(zone).date() - DAY
    while day <= end.astimezone(zone).date() + DAY:
        if calendar.is_business_day(day):
            window_start = datetime.combine(day, opens, tzinfo=zone)
            closing_day = day if calendar.working_hours else day + DAY
            window_end = datetime.combine(closing_day, closes, tzinfo=zone)
            overlap = min(window_end, end) - max(window_start, start)
            total += max(overlap, timedelta())
        day += DAY
    return total


@settings(max_examples=100)
@given(st.sampled_from(BUSINESS_POLICIES), instants, spans)
def test_business_time_matches_a_day_by_day_count(
    policy: SlaPolicy, start: datetime, span: timedelta
) -> None:
    calendar = policy.calendar
    assert calendar is not None
    end = start + span
    expected = reference_business_time(calendar, start, end)
    assert calendar.elapsed(start, end) == expected
    if policy.from_end_of_day:  # counted from the end of the day
        begun = calendar.end_of_day(start)
        expected = reference_business_time(calendar, begun, max(begun, end))
    assert policy.elapsed(start, end) == expected


def test_business_calendars_refuse_instants_outside_their_years() -> None:
    far = datetime(3500, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="2999"):
        OFFICE.elapsed(datetime(2026, 1, 1, tzinfo=UTC), far)
    with pytest.raises(ValueError, match="2999"):
        OFFICE.add(far, HOUR)
    assert preset("cfpb").elapsed(datetime(2026, 1, 1, tzinfo=UTC), far) > DAY


BEFORE_THE_CALENDARS = datetime(1898, 12, 1, tzinfo=UTC)
"""A month before the first year whose business windows are built (1899, a
local year differing from UTC's by at most one)."""


@settings(max_examples=50, deadline=None)
@given(
    start=st.datetimes(max_value=BEFORE_THE_CALENDARS.replace(tzinfo=None)),
    end=st.datetimes(min_value=datetime(1899, 1, 1), max_value=datetime(1900, 3, 1)),
    within=st.timedeltas(min_value=HOUR, max_value=timedelta(days=40)),
)
def test_a_business_policy_counts_no_time_before_the_calendar_years(
    start: datetime, end: datetime, within: timedelta
) -> None:
    """A policy measures what a store holds, which may predate the limit on
    command times: time before the calendars' years is never business time,
    so measuring from any earlier instant always gives what measuring from
    just before them does."""
    policy = preset("fca_disp_payments")
    start, end = start.replace(tzinfo=UTC), end.replace(tzinfo=UTC)
    assert policy.elapsed(start, end) == policy.elapsed(BEFORE_THE_CALENDARS, end)
    assert policy.deadline(start, within) == policy.deadline(
        BEFORE_THE_CALENDARS, within
    )


def test_a_business_deadline_after_the_calendar_years_is_never_due() -> None:
    """The policy names no deadline past them (None, as for a deadline behind
    an open pause); the calendar itself refuses to add past them."""
    policy = preset("fca_disp_payments")
    assert policy.calendar is not None
    late = datetime(2999, 12, 1, tzinfo=UTC)
    assert policy.deadline(late, timedelta(days=200)) is not None  # in 3000
    assert policy.deadline(late, timedelta(days=400)) is None
    # The edges of the dates there are: counted from the end of the day,
    # that day's end may be past the last date, or the first day local.
    last = datetime(9999, 12, 31, 9, tzinfo=UTC)
    assert policy.deadline(last, DAY) is None
    assert policy.elapsed(last - DAY, last) == timedelta()
    first = datetime(1, 1, 1, tzinfo=UTC)
    assert policy.deadline(first, DAY) == policy.deadline(BEFORE_THE_CALENDARS, DAY)
    with pytest.raises(ValueError, match="2999"):
        policy.calendar.add(late, timedelta(days=400))


@pytest.mark.parametrize(
    "field", ["acknowledge_within", "update_every", "resolve_within"]
)
def test_a_target_longer_than_ten_years_is_refused_by_name(field: str) -> None:
    """56 * 86,400 days (eight weeks' seconds given as days) would put a
    deadline past the last date there is, and stop every report."""
    with pytest.raises(ValidationError, match=field) as refused:
        Targets(**{field: timedelta(days=56 * 86_400)})
    assert "3660 days" in str(refused.value)
    assert getattr(Targets(**{field: sla.MAX_TARGET}), field) == sla.MAX_TARGET


def test_a_calendar_deadline_past_the_last_date_there_is_is_never_due() -> None:
    """Only a store written before command times were limited holds a
    receipt late enough; its reports must still be read."""
    policy = preset("cfpb")
    start = datetime(9999, 12, 1, 12, tzinfo=UTC)
    midnight = datetime(9999, 12, 2, tzinfo=ZoneInfo("America/New_York"))
    assert policy.deadline(start, timedelta(days=15)) == midnight + timedelta(days=15)
    assert policy.deadline(start, timedelta(days=60)) is None
    assert policy.deadline(datetime(9999, 12, 31, 23, tzinfo=UTC), DAY) is None
