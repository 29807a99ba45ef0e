"""Report charts as PNG images (matplotlib, Agg canvas: no display needed).

Each chart is 1080×1080 px (7.2 in at 150 dpi), with large type and at most
eight bars per group, so that it reads on a phone in a Telegram chat. Only the
object API is used (no ``pyplot`` state), so charts can be drawn in worker
threads. Rendering blocks: callers on the event loop use ``asyncio.to_thread``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hub.kernel.texts import text
from hub.reports.reports import CHANNELS, Report, Table

KINDS = (
    "first_response",
    "resolution",
    "volume_hour",
    "volume_channel",
    "load",
    "breaches",
    "stages",
    "campaigns",
    "satisfaction",
)
SIZE_IN = 7.2
DPI = 150
MAX_BARS = 8
TITLE_PT = 22
LABEL_PT = 16
VALUE_PT = 14
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")
SCORE_COLORS = ("#d62728", "#ff7f0e", "#bcbd22", "#8fd175", "#2ca02c")  # 1 (red) to 5 (green)
SOURCE = {
    "first_response": "first_response_by_manager",
    "resolution": "resolution_by_manager",
    "volume_hour": "volume_by_hour",
    "volume_channel": "volume_by_channel",
    "load": "open_load",
    "breaches": "breaches_by_kind",
    "stages": "stage_moves",
    "campaigns": "campaigns",
    "satisfaction": "satisfaction_by_manager",
}
_COUNT = {
    "first_response": "answered",
    "resolution": "resolved",
    "volume_hour": "total",
    "volume_channel": "inbound",
    "load": "open",
    "breaches": "due",
    "stages": "moves",
    "campaigns": "sent",
    "satisfaction": "ratings",
}


def title(kind: str, language: str) -> str:
    return text(f"chart_{kind}", language)


def has_data(report: Report, kind: str) -> bool:
    """Whether the chart would show anything (the staff side leaves out empty ones)."""
    table = _table(report, kind)
    return table is not None and any(
        isinstance(v, int | float) and v > 0 for v in table.column(_COUNT[kind])
    )


def render(report: Report, kind: str, language: str) -> bytes:
    """The chart ``kind`` of the report as PNG bytes."""
    if kind not in KINDS:
        raise ValueError(f"unknown chart {kind!r}")
    figure = Figure(figsize=(SIZE_IN, SIZE_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    heading = f"{title(kind, language)}\n{report.period.first:%d.%m} – {report.period.last:%d.%m}"
    axes.set_title(heading, fontsize=TITLE_PT, loc="left")
    table = _table(report, kind)
    if table is None or not has_data(report, kind):
        _empty(axes, language)
    else:
        _DRAW[kind](axes, table, language)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


# -- one drawing per kind --------------------------------------------------------------


def _first_response(axes: Axes, table: Table, language: str) -> None:
    _durations(axes, table, _COUNT["first_response"], language)


def _resolution(axes: Axes, table: Table, language: str) -> None:
    _durations(axes, table, _COUNT["resolution"], language)


def _volume_hour(axes: Axes, table: Table, language: str) -> None:
    _hours(axes, table)


def _volume_channel(axes: Axes, table: Table, language: str) -> None:
    _grouped(
        axes,
        [str(v) for v in table.column("channel")],
        {
            text("chart_inbound", language): _numbers(table.column("inbound")),
            text("chart_outbound", language): _numbers(table.column("outbound")),
        },
    )


def _load(axes: Axes, table: Table, language: str) -> None:
    top = _top(table, "open")
    _grouped(
        axes,
        [_name(v, language) for v in top.column("manager")],
        {
            text("chart_open", language): _numbers(top.column("open")),
            text("chart_overdue", language): _numbers(top.column("overdue")),
        },
        horizontal=True,
    )


def _breaches(axes: Axes, table: Table, language: str) -> None:
    _grouped(
        axes,
        [text(f"sla_{v}", language) if v else "—" for v in table.column("kind")],
        {
            text("chart_due", language): _numbers(table.column("due")),
            text("chart_missed", language): _numbers(table.column("missed")),
        },
    )


def _stages(axes: Axes, table: Table, language: str) -> None:
    top = _top(table, "moves")
    labels = [f"{a} → {b}" for a, b in zip(top.column("from"), top.column("to"), strict=True)]
    _grouped(axes, labels, {"": _numbers(top.column("moves"))}, horizontal=True)


def _campaigns(axes: Axes, table: Table, language: str) -> None:
    top = _top(table, "sent")
    _grouped(
        axes,
        [_short(str(v)) for v in top.column("campaign")],
        {
            text("chart_sent", language): _numbers(top.column("sent")),
            text("chart_replied", language): _numbers(top.column("replied")),
        },
        horizontal=True,
    )


def _satisfaction(axes: Axes, table: Table, language: str) -> None:
    """Per manager, how many of each score (stacked, 1 red to 5 green), with the average."""
    top = _top(table, "ratings")
    labels = [_name(v, language) for v in top.column("manager")]
    positions = list(range(len(labels)))
    left = [0.0] * len(labels)
    for score, color in zip(range(1, 6), SCORE_COLORS, strict=True):
        values = _numbers(top.column(f"s{score}"))
        axes.barh(positions, values, left=left, color=color, label=str(score), height=0.6)
        left = [a + b for a, b in zip(left, values, strict=True)]
    averages = [f"{text('chart_average', language)} {v}" for v in top.column("average")]
    for place, total, said in zip(positions, left, averages, strict=True):
        axes.text(total, place, f"  {said}", va="center", fontsize=VALUE_PT)
    axes.set_yticks(positions, labels)
    axes.invert_yaxis()
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.margins(x=0.35)
    axes.tick_params(labelsize=LABEL_PT)
    axes.legend(fontsize=LABEL_PT, frameon=False, ncols=5, loc="lower right")
    axes.spines[["top", "right"]].set_visible(False)


_DRAW: dict[str, Callable[[Axes, Table, str], None]] = {
    "first_response": _first_response,
    "resolution": _resolution,
    "volume_hour": _volume_hour,
    "volume_channel": _volume_channel,
    "load": _load,
    "breaches": _breaches,
    "stages": _stages,
    "campaigns": _campaigns,
    "satisfaction": _satisfaction,
}


def _table(report: Report, kind: str) -> Table | None:
    return next((t for t in report.tables if t.key == SOURCE[kind]), None)


def _numbers(values: Sequence[object]) -> list[float]:
    return [float(v) if isinstance(v, int | float) else 0.0 for v in values]


def _short(label: str, limit: int = 16) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _name(value: object, language: str) -> str:
    return _short(str(value)) if value is not None else text("chart_nobody", language)


def _top(table: Table, key: str) -> Table:
    """The ``MAX_BARS`` rows with the most ``key``, in the table's order."""
    index = next(i for i, c in enumerate(table.columns) if c.key == key)
    ranked = sorted(
        range(len(table.rows)),
        key=lambda i: -(v if isinstance(v := table.rows[i][index], int | float) else 0),
    )
    keep = sorted(ranked[:MAX_BARS])
    return Table(table.key, table.title, table.columns, tuple(table.rows[i] for i in keep))


def _empty(axes: Axes, language: str) -> None:
    axes.text(
        0.5,
        0.5,
        text("chart_no_data", language),
        ha="center",
        va="center",
        fontsize=TITLE_PT,
        transform=axes.transAxes,
    )
    axes.set_axis_off()


def _durations(axes: Axes, table: Table, count: str, language: str) -> None:
    """Median and p90 per manager, in minutes or hours as fits."""
    answered = Table(
        table.key,
        table.title,
        table.columns,
        tuple(row for row, m in zip(table.rows, table.column("median_s"), strict=True) if m),
    )
    top = _top(answered, count)
    medians = _numbers(top.column("median_s"))
    p90s = _numbers(top.column("p90_s"))
    longest = max([*medians, *p90s, 0.0])
    hours = longest >= 2 * 3600
    unit, scale = (
        text("chart_hours" if hours else "chart_minutes", language),
        3600.0 if hours else 60.0,
    )
    _grouped(
        axes,
        [_name(v, language) for v in top.column("manager")],
        {
            text("chart_median", language): [v / scale for v in medians],
            "p90": [v / scale for v in p90s],
        },
        horizontal=True,
        unit=unit,
    )


def _hours(axes: Axes, table: Table) -> None:
    """Inbound by hour of day, stacked by channel."""
    hours = [int(h) if isinstance(h, int) else 0 for h in table.column("hour")]
    bottom = [0.0] * len(hours)
    for color, channel in zip(COLORS, CHANNELS, strict=False):
        values = _numbers(table.column(channel))
        if any(values):
            axes.bar(hours, values, bottom=bottom, color=color, label=channel, width=0.8)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axes.set_xticks(range(0, 24, 3))
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlim(-0.6, 23.6)
    axes.tick_params(labelsize=LABEL_PT)
    axes.legend(fontsize=LABEL_PT, frameon=False)
    axes.spines[["top", "right"]].set_visible(False)


def _grouped(
    axes: Axes,
    labels: Sequence[str],
    series: dict[str, list[float]],
    *,
    horizontal: bool = False,
    unit: str = "",
) -> None:
    """Bars per label, one per series side by side, each with its value written on it."""
    count = max(len(series), 1)
    width = 0.8 / count
    positions = list(range(len(labels)))
    for n, (name, values) in enumerate(series.items()):
        offset = (n - (count - 1) / 2) * width
        places = [p + offset for p in positions]
        if horizontal:
            bars = axes.barh(places, values, height=width, color=COLORS[n], label=name or None)
        else:
            bars = axes.bar(places, values, width=width, color=COLORS[n], label=name or None)
        shown = [f"{v:.0f}" if v >= 10 or v == int(v) else f"{v:.1f}" for v in values]
        axes.bar_label(bars, labels=shown, fontsize=VALUE_PT, padding=3)
    counts = (axes.xaxis if horizontal else axes.yaxis) if not unit else None
    if counts is not None:
        counts.set_major_locator(MaxNLocator(integer=True))
    if horizontal:
        axes.set_yticks(positions, labels)
        axes.invert_yaxis()  # the table's first row on top
        if unit:
            axes.set_xlabel(unit, fontsize=LABEL_PT)
        axes.margins(x=0.15)
    else:
        axes.set_xticks(positions, labels)
        if unit:
            axes.set_ylabel(unit, fontsize=LABEL_PT)
        axes.margins(y=0.12)
    axes.tick_params(labelsize=LABEL_PT)
    if any(series):
        axes.legend(fontsize=LABEL_PT, frameon=False)
    axes.spines[["top", "right"]].set_visible(False)
