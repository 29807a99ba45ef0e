"""``hub report``: the reports of a period as plain-text tables or CSV, and charts as PNG files.

hub report --config FILE [week|month | --from YYYY-MM-DD --to YYYY-MM-DD]
           [--format table|csv] [--chart DIR] [--lang ru|en]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from hub import config as config_module
from hub.kernel.clock import SystemClock
from hub.reports.reporter import Reporter
from hub.reports.reports import PERIODS, Report, as_csv, as_text, parse_day

HELP = "print the reports of a period (week, month, or --from/--to) as tables or CSV"


def add_parser(sub: Any) -> None:
    """Add ``report`` to the ``hub`` command's subparsers."""
    cmd: argparse.ArgumentParser = sub.add_parser("report", help=HELP, description=HELP)
    cmd.add_argument(
        "--config", metavar="FILE", help="config file (default ./config.toml, then $HUB_CONFIG)"
    )
    cmd.add_argument(
        "period", nargs="?", choices=tuple(PERIODS), help="the last 7 or 30 days (default week)"
    )
    cmd.add_argument("--from", dest="first", metavar="DATE", help="first day, YYYY-MM-DD")
    cmd.add_argument("--to", dest="last", metavar="DATE", help="last day (inclusive)")
    cmd.add_argument("--format", choices=("table", "csv"), default="table")
    cmd.add_argument("--chart", metavar="DIR", help="also write every chart as DIR/KIND.png")
    cmd.add_argument("--lang", choices=("ru", "en"), help="language of the charts")
    cmd.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from hub.reports import charts
    from storage import Database

    config = config_module.load(config_module.resolve_path(args.config))
    first = parse_day(args.first, "--from") if args.first else None
    last = parse_day(args.last, "--to") if args.last else None
    language = args.lang or config.hub.language

    async def build() -> Report:
        db = Database(config.storage.url)
        try:
            reporter = Reporter(
                db,
                SystemClock(),
                timezone=config.hub.timezone,
                language=language,
                reply_window_days=config.campaigns.reply_window_days,
            )
            return await reporter.report(reporter.period(args.period, first=first, last=last))
        finally:
            await db.dispose()

    report = asyncio.run(build())
    print(as_csv(report) if args.format == "csv" else as_text(report), end="")
    if args.chart:
        folder = Path(args.chart)
        folder.mkdir(parents=True, exist_ok=True)
        for kind in charts.KINDS:
            path = folder / f"{kind}.png"
            path.write_bytes(charts.render(report, kind, language))
            # CSV on stdout stays CSV: the files are named on stderr then
            print(f"chart: {path}", file=sys.stderr if args.format == "csv" else sys.stdout)
    return 0
