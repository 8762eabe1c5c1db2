"""The stages of a projection catch-up, as stage timers (`bench.probes`).

Used by the projections section: a probed rebuild, folded in one process,
when catch-up misses its target.
"""

from __future__ import annotations

import importlib

from amends.infra.mapper import PydanticMapper
from amends.infra.reporting import StoreFeed
from amends.projections.facts import ComplaintFacts, Folder
from amends.projections.runner import ProjectionRunner
from amends.projections.summary import Delta
from bench.probes import Probe

STAGES = (
    ("part", "load a part (`load_part`, rest: its transaction and commit)"),
    ("fold_part", "fold a part (`fold_complaints`, rest: gathering rows)"),
    ("read", "read its events (`StoreFeed.read_complaints`, rest: upcast)"),
    ("fetch", "fetch rows (`complaint_rows`: the events as tuples)"),
    ("decode", "decode JSON (`PydanticMapper.decode_state`)"),
    ("fold", "fold events into facts (`Folder.apply`)"),
    ("rows", "derive view rows (`rows_of`, rest: SLA deadlines, spans)"),
    ("to_json", "facts to JSON (`ComplaintFacts.to_json`)"),
    ("totals", "running totals (`summary.Delta.add`: contributions)"),
    ("insert", "insert rows (`_insert_many`: bind processors, executemany)"),
    ("finish", "find every percentile at the end (`_write_percentiles`)"),
)
"""(label, description) in the order the report lists them; nested stages
follow the stage that calls them. A rebuild on a SQLite file is a load
(ADR 0008); the batches of a catch-up are not timed here."""


def probes() -> list[Probe]:
    runner_module = importlib.import_module("amends.projections.runner")
    # The feed calls the function by the name its own module imported.
    feed_module = importlib.import_module("amends.infra.reporting")
    return [
        Probe(ProjectionRunner, "load_part", "part"),
        Probe(ProjectionRunner, "fold_complaints", "fold_part"),
        Probe(StoreFeed, "read_complaints", "read"),
        Probe(feed_module, "complaint_rows", "fetch"),
        Probe(PydanticMapper, "decode_state", "decode"),
        Probe(Folder, "apply", "fold"),
        Probe(ProjectionRunner, "rows_of", "rows"),
        Probe(ComplaintFacts, "to_json", "to_json"),
        Probe(Delta, "add", "totals"),
        Probe(runner_module, "_insert_many", "insert"),
        Probe(runner_module, "_write_percentiles", "finish"),
    ]
