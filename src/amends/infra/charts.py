"""PNG charts of the views, for the demo and for a team's own dashboards."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no screen on a server
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from amends.projections.reports import ChartData


def save_charts(data: ChartData, folder: Path) -> list[Path]:
    """Write the three charts into `folder`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []

    figure, axes = plt.subplots(figsize=(8, 4.5))
    owners = list(data.ttr_hours_by_owner)
    if owners:
        axes.boxplot([data.ttr_hours_by_owner[o] for o in owners], showfliers=False)
        axes.set_xticks(range(1, len(owners) + 1), owners)
    axes.set_title("Time to resolution by owner (wall clock)")
    axes.set_ylabel("hours from receipt to first resolution")
    paths.append(_save(figure, folder / "ttr_by_owner.png"))

    figure, axes = plt.subplots(figsize=(8, 4.5))
    days = [day for day, _ in data.open_by_day]
    axes.plot(days, [n for _, n in data.open_by_day], marker=".")
    axes.set_title("Open complaints over time")
    axes.set_ylabel("open at the end of the day")
    axes.set_xticks(days[:: max(1, len(days) // 8)])
    axes.tick_params(axis="x", labelrotation=30)
    paths.append(_save(figure, folder / "open_backlog.png"))

    figure, axes = plt.subplots(figsize=(8, 4.5))
    weeks = [week for week, _ in data.compliance_by_week]
    axes.bar(weeks, [100 * rate for _, rate in data.compliance_by_week])
    axes.set_ylim(0, 100)
    axes.set_title("SLA compliance by week (deadlines falling due)")
    axes.set_ylabel("% met on time")
    axes.tick_params(axis="x", labelrotation=30)
    paths.append(_save(figure, folder / "sla_by_week.png"))
    return paths


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
