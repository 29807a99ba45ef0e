"""settings set in the console: overrides of the config file's reloadable keys

``setting_overrides``: one row per key (``routing``, ``managers``, ``hub.hours``…)
set in the console or the admin API, its value as the file would spell it, who
changed it and when; the file itself is never rewritten. ``settings_version``: one
row, bumped by every change, which every instance polls to follow at once.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-12
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "setting_overrides",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_setting_overrides")),
    )
    op.create_table(
        "settings_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settings_version")),
    )
    op.execute("INSERT INTO settings_version (id, version) VALUES (1, 0)")


def downgrade() -> None:
    op.drop_table("settings_version")
    op.drop_table("setting_overrides")
