"""Constrained value types shared by commands and events.

The limits are part of the public contract (see the README's "Input limits"):
they keep one careless caller from filling the store with megabytes of text or
with control characters that corrupt terminals and CSV exports.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

MAX_NAME_LENGTH = 200
MAX_LABEL_LENGTH = 100
MAX_TEXT_LENGTH = 5_000
MAX_LIST_ITEMS = 50
MAX_MONEY = Decimal("1000000000")
FIRST_YEAR = 1900
LAST_YEAR = 2999
"""The years (UTC) a command's times may fall in: the years business calendars
cover (holiday rules outside them are guesswork), so that every SLA policy can
measure what is recorded."""

# Control characters (C0, DEL, C1) and lone surrogates corrupt terminals, CSV
# exports and JSON consumers; Unicode line and paragraph separators break lines.
_CONTROL = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff"
_NOT_ONE_LINE = re.compile(f"[{_CONTROL}\n\r\t\u2028\u2029]")
_NOT_TEXT = re.compile(f"[{_CONTROL}]")


def _single_line(value: str) -> str:
    found = _NOT_ONE_LINE.search(value)
    if found:
        raise ValueError(
            "must be one line without control characters "
            f"(found U+{ord(found.group()):04X})"
        )
    return value


def _multi_line(value: str) -> str:
    found = _NOT_TEXT.search(value)
    if found:
        raise ValueError(
            f"must not contain control characters (found U+{ord(found.group()):04X})"
        )
    return value


def _to_utc(value: datetime) -> datetime:
    """Store every instant in UTC so equal instants compare and serialise alike."""
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("is out of the representable range in UTC") from exc


_CURRENCY = re.compile(r"^[A-Z]{3}$")


def _currency(value: str) -> str:
    if not _CURRENCY.match(value):
        raise ValueError("must be a three-letter ISO 4217 code such as EUR")
    return value


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME_LENGTH),
    AfterValidator(_single_line),
]
"""A person or team: who acted, who owns, who was informed, the customer."""

Label = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_LABEL_LENGTH),
    AfterValidator(_single_line),
]
"""A short tag used to group reports: channel, category, external reference."""


def _composed(value: str) -> str:
    return unicodedata.normalize("NFC", value)


Owner = Annotated[Name, AfterValidator(_composed)]
"""A name a command records as who acted or who owns: composed (NFC), one
spelling for each. "José" typed with a combining accent and "José" typed
precomposed look alike and are one person; kept as typed, they were two
owners in every report. Stored events keep what they hold."""

Grouping = Annotated[Label, AfterValidator(_composed)]
"""A channel or category as a command records it: composed (NFC), as
`Owner`, since reports group by it."""

Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_LENGTH),
    AfterValidator(_multi_line),
]
"""Free prose written by a person: summaries, apologies, notes, explanations."""


def recordable(value: datetime) -> bool:
    """Whether a command may record this moment: within `FIRST_YEAR` to
    `LAST_YEAR` (UTC), the years business calendars cover."""
    return FIRST_YEAR <= value.year <= LAST_YEAR


def _within_years(value: datetime) -> datetime:
    if not recordable(value):
        raise ValueError(
            f"must be in the years {FIRST_YEAR} to {LAST_YEAR} (UTC), not {value.year}"
        )
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware moment, normalised to UTC; naive datetimes are refused."""

CommandInstant = Annotated[Instant, AfterValidator(_within_years)]
"""A moment a command records (when it happened, a due date): also within
`FIRST_YEAR` to `LAST_YEAR`. Events keep the plain `Instant`, so a store
written before the limit still reads."""


def _no_negative_zero(value: Decimal) -> Decimal:
    """-0.00 passes `ge=0`, and then read "-0.00" in every history."""
    return value.copy_abs() if value == 0 else value


Money = Annotated[
    Decimal,
    Field(ge=0, le=MAX_MONEY, max_digits=14, decimal_places=2),
    AfterValidator(_no_negative_zero),
]
"""A non-negative amount with at most two decimal places."""

Currency = Annotated[str, AfterValidator(_currency)]

NameList = Annotated[tuple[Name, ...], Field(min_length=1, max_length=MAX_LIST_ITEMS)]
TextList = Annotated[tuple[Text, ...], Field(min_length=1, max_length=MAX_LIST_ITEMS)]


UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Unicode categories a terminal would act on or cannot show: control and
format characters (a right-to-left override, a zero-width space), lone
surrogates, private and unassigned code points, line and paragraph
separators. Names may hold some of them (only control characters are
refused), so text shown to a reader escapes them (`shown`)."""


def shown(text: str) -> str:
    """`text` for a reader's screen: each `UNPRINTABLE` character escaped
    (`\\u202e`), so a name cannot reverse the rest of a line or pass for
    another name it looks the same as."""
    if text.isascii() and text.isprintable():
        return text  # most text, whose every letter was looked up (`display_width`)
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) in UNPRINTABLE
        else ch
        for ch in text
    )


def display_width(text: str) -> int:
    """Columns `text` takes on a terminal: two for a wide character (most of
    Chinese, Japanese and Korean), none for a mark drawn on the character
    before it (an accent, a Thai or Devanagari vowel sign, an emoji's
    variation selector: categories Mn and Me, whatever their combining
    class) nor for a Hangul vowel or final consonant joining a syllable,
    one for the rest: `len` for ASCII, most text. Asking Unicode about each
    letter of it made the time-to-resolution table of 12,500 complaints with
    every row (92,669 of them) take 5.3 s to render, 1.2 s without."""
    if text.isascii():
        return len(text)
    return _width_by_character(text)


def _width_by_character(text: str) -> int:
    return sum(
        0
        if unicodedata.category(ch) in ("Mn", "Me") or "\u1160" <= ch <= "\u11ff"
        else 2
        if unicodedata.east_asian_width(ch) in ("W", "F")
        else 1
        for ch in text
    )
