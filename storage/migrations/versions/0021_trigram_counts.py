"""How many indexed rows hold each trigram, so that a long fragment is looked up by its
rarest few trigrams rather than every one

``search_terms_trigrams`` counts, per index (``source``: ``identities`` for email
addresses, phones and username hints, ``usernames`` for the usernames messages
carried), the rows whose text holds each trigram (``term``, in lower case). The hub
fills it in batches behind the indexes from position 0 (``storage/terms.py``); a
database of any size starts at once and searches as before until the counts catch
up. Counts are hints, never results: a search checks the whole fragment on every row
its rarest trigrams find.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    rowid = " WITHOUT ROWID" if op.get_bind().dialect.name == "sqlite" else ""
    op.execute(
        "CREATE TABLE search_terms_trigrams (source TEXT NOT NULL, term TEXT NOT NULL,"
        # By term first: a search looks its trigrams up in every index at once.
        " n INTEGER NOT NULL, CONSTRAINT search_terms_trigrams_pkey PRIMARY KEY (term, source))"
        + rowid
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS search_terms_trigrams")
    op.execute("DELETE FROM search_positions WHERE name LIKE 'trigrams:%'")
