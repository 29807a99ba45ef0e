"""the log by time: an index for the reports' periods

The reports count the interactions of a period (volume by channel and quarter
hour, stage moves); without an index on ``at`` each report read the whole log.
The index carries direction and channel, so the volume is counted from it alone.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_interactions_at", "interactions", ["at", "direction", "channel"])


def downgrade() -> None:
    op.drop_index("ix_interactions_at", table_name="interactions")
