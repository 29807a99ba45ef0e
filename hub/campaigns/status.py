"""A campaign's results as the admin API, ``hub campaign status`` and the desk show them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hub.kernel.texts import progress_bar, text
from storage import campaigns as q

OUTCOMES = ("reached", "interested", "not_interested", "call_back", "wrong_number")


# -- results ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Status:
    campaign: q.CampaignRow
    variants: list[q.VariantStats]
    outcomes: list[tuple[str, str, int]]

    @property
    def targeted(self) -> int:
        return sum(v.targeted for v in self.variants)

    @property
    def done(self) -> int:
        """Targets that need nothing more from the sender: out (or failed) or skipped."""
        if self.campaign.mode == "calls":
            return sum(v.queued + v.skipped for v in self.variants)
        return sum(v.delivered + v.failed + v.skipped for v in self.variants)

    def as_json(self) -> dict[str, Any]:
        c = self.campaign
        return {
            "id": c.id,
            "name": c.name,
            "mode": c.mode,
            "status": c.status,
            "created_by": c.created_by,
            "created_at": c.created_at.isoformat(),
            "started_at": c.started_at.isoformat() if c.started_at else None,
            "finished_at": c.finished_at.isoformat() if c.finished_at else None,
            "targeted": self.targeted,
            "done": self.done,
            "variants": [
                {
                    "variant": v.variant,
                    "targeted": v.targeted,
                    "pending": v.pending,
                    "skipped": v.skipped,
                    "queued": v.queued,
                    "sent": v.sent,
                    "delivered": v.delivered,
                    "failed": v.failed,
                    "replied": v.replied,
                    "opted_out": v.opted_out,
                }
                for v in self.variants
            ],
            "outcomes": [{"manager": m, "outcome": o, "count": n} for m, o, n in self.outcomes],
        }


@dataclass(frozen=True, slots=True)
class PreviewItem:
    client_id: int
    variant: str
    channel: str | None
    skip: str | None
    subject: str | None
    text: str


def render_status(status: Status, language: str) -> str:
    c = status.campaign
    lines = [
        f"#{c.id} {c.name} ({c.mode}) — {text(f'campaign_status_{c.status}', language)}",
        progress_bar(status.done, status.targeted, 20),
    ]
    for v in status.variants:
        lines.append(
            text(
                "campaign_variant_stats",
                language,
                variant=v.variant,
                targeted=v.targeted,
                sent=v.sent,
                delivered=v.delivered,
                failed=v.failed,
                replied=v.replied,
                opted_out=v.opted_out,
                skipped=v.skipped,
            )
        )
    for manager, outcome, count in status.outcomes:
        label = text(f"call_outcome_{outcome}", language) if outcome in OUTCOMES else outcome
        lines.append(f"{manager}: {label} — {count}")
    return "\n".join(lines)
