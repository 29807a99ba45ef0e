"""``GET /metrics`` of the admin server (issue 9): Prometheus text format, read
without the admin token, counters of this instance and gauges from the database."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from hub.app.run import Hub
from hub.kernel.errors import TemporaryDeliveryError
from hub.kernel.identities import identity
from hub.kernel.types import Channel, InboundMessage, OutboundMessage
from storage.models import Deadline, Reminder
from tests.fakes import RecordingChannel
from tests.test_app import TOKEN, _config, _free_port


async def scrape(port: int) -> dict[str, float]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        body = await resp.text()
    assert TOKEN not in body
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


async def test_metrics_count_what_came_in_and_went_out_and_read_the_queue(
    db_url: str, tmp_path: Path
) -> None:
    port = _free_port()
    channel = RecordingChannel("telegram")

    def fail(message: OutboundMessage) -> TemporaryDeliveryError | None:
        if "later" in message.text:
            return TemporaryDeliveryError("busy (test)", retry_after=3600)
        return None

    channel.fail = fail
    hub = Hub(_config(db_url, tmp_path, port), channels={"telegram": channel})
    async with hub.lifespan():
        assert channel.sink is not None and hub.db is not None
        now = hub.clock.now()
        first = await channel.sink(
            InboundMessage(
                Channel.TELEGRAM, "bot", "5:1", (identity("telegram", 5),), now, text="hello"
            )
        )
        await channel.wait_for(lambda: {m.kind for m in channel.sent} >= {"mirror", "assigned"})
        # a second message whose mirror the channel keeps refusing: it waits in the queue
        await channel.sink(
            InboundMessage(
                Channel.TELEGRAM, "bot", "5:2", (identity("telegram", 5),), now, text="later"
            )
        )
        await channel.wait_for(lambda: any("later" in m.text for m in channel.attempts))
        async with hub.db.write() as conn:
            assert first.conversation_id is not None
            await conn.execute(
                insert(Deadline).values(
                    conversation_id=first.conversation_id,
                    client_id=first.client_id,
                    policy="test",
                    kind="first_response",
                    started_at=now,
                    remind_at=now,
                    due_at=now,
                    step=2,
                    status="open",
                    created_at=now,
                )
            )
            await conn.execute(
                insert(Reminder).values(
                    client_id=first.client_id,
                    due_at=now + timedelta(days=1),
                    text="call back",
                    created_at=now,
                )
            )
        # a redelivery is not counted again
        await channel.sink(
            InboundMessage(
                Channel.TELEGRAM, "bot", "5:1", (identity("telegram", 5),), now, text="hello"
            )
        )
        metrics = await scrape(port)

    assert metrics["hub_ingested_total{channel=telegram}"] == 2
    assert metrics["hub_outbound_sent_total"] >= 2
    assert metrics["hub_outbound_failed_total"] == 0
    assert metrics["hub_ready"] == 1
    assert metrics["hub_database_up"] == 1
    assert metrics["hub_outbox_pending"] >= 1  # at least the refused mirror
    assert metrics["hub_outbox_oldest_pending_seconds"] >= 0
    assert metrics["hub_deadlines_breached"] == 1
    assert metrics["hub_reminders_pending"] == 1


async def test_metrics_answer_while_the_database_is_away(db_url: str, tmp_path: Path) -> None:
    port = _free_port()
    hub = Hub(_config(db_url, tmp_path, port), channels={"telegram": RecordingChannel()})
    async with hub.lifespan():
        assert hub.db is not None
        await hub.db.engine.dispose()
        original = hub.db.read

        def broken() -> object:
            raise OSError("database away (test)")

        hub.db.read = broken  # type: ignore[method-assign,assignment]
        try:
            metrics = await scrape(port)
        finally:
            hub.db.read = original  # type: ignore[method-assign]
    assert metrics["hub_database_up"] == 0
    assert "hub_outbox_pending" not in metrics
    assert metrics["hub_outbound_sent_total"] >= 0
