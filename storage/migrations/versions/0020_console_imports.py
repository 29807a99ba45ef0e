"""the web console's CSV imports, so that their page answers on any instance

``console_imports``: one row per import started in the console (who, the file's
name, running, done or failed, and once done its report: the counts and each
refused row), read by the import's page wherever it is asked for; the progress of
one under way lives in the process running it.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "console_imports",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("manager_id", sa.Integer(), nullable=False),
        sa.Column("file", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("report", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("started_at", _AT, nullable=False),
        sa.Column("finished_at", _AT, nullable=True),
        sa.ForeignKeyConstraint(
            ["manager_id"], ["managers.id"], name=op.f("fk_console_imports_manager_id_managers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_imports")),
    )


def downgrade() -> None:
    op.drop_table("console_imports")
