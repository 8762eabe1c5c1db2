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
    ("part", "fold a part of the load (`fold_complaints`, rest: gathering rows)"),
    ("read_part", "read its events (`StoreFeed.read_complaints`, rest: upcast)"),
    ("fetch_part", "fetch rows (`complaint_rows`: the events as tuples)"),
    ("read", "read the log (`StoreFeed.read`, rest: upcast, `FeedItem`)"),
    ("fetch", "fetch rows (`notification_rows`: the log's rows as tuples)"),
    ("decode", "decode JSON (`PydanticMapper.decode_state`)"),
    ("position", "read the tracking position (`ProjectionRunner.position`)"),
    ("batch", "write a batch (`_commit`, rest: update tracking, commit)"),
    ("load", "load touched complaints' facts (`_load`)"),
    ("from_json", "parse facts JSON (`ComplaintFacts.from_json`)"),
    ("fold", "fold events into facts (`Folder.apply`)"),
    ("write", "rewrite view rows (`_write`, rest: the DELETEs)"),
    ("rows", "derive view rows (`rows_of`, rest: SLA deadlines, spans)"),
    ("to_json", "facts to JSON (`ComplaintFacts.to_json`)"),
    ("totals", "running totals (`summary.Delta.change`: contributions, old and new)"),
    ("insert", "upsert rows (`_upsert_many`: bind processors, executemany)"),
    ("summary", "write the running totals and percentiles (`_write_summary`)"),
)
"""(label, description) in the order the report lists them; nested stages
follow the stage that calls them."""


def probes() -> list[Probe]:
    runner_module = importlib.import_module("amends.projections.runner")
    # The feed calls the function by the name its own module imported.
    feed_module = importlib.import_module("amends.infra.reporting")
    return [
        Probe(ProjectionRunner, "fold_complaints", "part"),
        Probe(StoreFeed, "read_complaints", "read_part"),
        Probe(feed_module, "complaint_rows", "fetch_part"),
        Probe(StoreFeed, "read", "read"),
        Probe(feed_module, "notification_rows", "fetch"),
        Probe(PydanticMapper, "decode_state", "decode"),
        Probe(ProjectionRunner, "position", "position"),
        Probe(ProjectionRunner, "_commit", "batch"),
        Probe(ProjectionRunner, "_load", "load"),
        Probe(ComplaintFacts, "from_json", "from_json"),
        Probe(Folder, "apply", "fold"),
        Probe(ProjectionRunner, "_write", "write"),
        Probe(ProjectionRunner, "rows_of", "rows"),
        Probe(ComplaintFacts, "to_json", "to_json"),
        Probe(Delta, "change", "totals"),
        Probe(runner_module, "_upsert_many", "insert"),
        Probe(runner_module, "_write_summary", "summary"),
    ]
