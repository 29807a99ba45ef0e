"""``hub import``, ``export``, ``duplicates``, ``merge``, ``unmerge`` and ``card``
as a user types them, on a SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.app.cli import main


def hub(*args: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    return int(done.value.code or 0)


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "hub.toml"
    path.write_text(
        f'[admin]\ntoken = "t"\n[storage]\nurl = "sqlite+aiosqlite:///{tmp_path}/hub.db"\n'
    )
    assert hub("migrate", "--config", str(path)) == 0  # the CLI makes no database itself
    return str(path)


def test_import_export_merge_unmerge_card(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.csv"
    good.write_text(
        "name,email,phone,telegram\n"
        "Анна Петрова,anna@example.com,,\n"
        "Петрова Анна,,+7 912 345-67-89,\n",
        encoding="utf-8",
    )
    assert hub("import", "--config", config, str(good)) == 0
    assert "added 2, updated 0, unchanged 0, refused 0" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("name,email\nX,not-an-email\n", encoding="utf-8")
    assert hub("import", "--config", config, str(bad)) == 1
    assert "row 2: email: " in capsys.readouterr().out

    assert hub("duplicates", "--config", config) == 0
    assert capsys.readouterr().out.startswith("#1\t#2\t100\tsimilar names")
    assert hub("merge", "--config", config, "1", "2") == 0
    assert "merge 1" in capsys.readouterr().out
    assert hub("card", "--config", config, "1") == 0
    card = capsys.readouterr().out
    assert "email anna@example.com" in card and "phone +79123456789" in card
    assert "merged: Петрова Анна (#2) into #1" in card

    out = tmp_path / "out.csv"
    assert hub("export", "--config", config, "--output", str(out)) == 0
    assert out.read_text(encoding="utf-8").count("\n") == 2  # the header and one client

    assert hub("unmerge", "--config", config, "1") == 0
    assert hub("export", "--config", config, "--output", str(out)) == 0
    assert out.read_text(encoding="utf-8").count("\n") == 3
    assert hub("unmerge", "--config", config, "1") == 1
    assert "undone already" in capsys.readouterr().err
    assert hub("card", "--config", config, "99") == 1


# -- issue 17 ------------------------------------------------------------------------


def _insert(config: str, statements: list[tuple[str, dict[str, object]]]) -> None:
    import asyncio

    from sqlalchemy import text

    from hub.config import load
    from storage import Database

    async def run() -> None:
        db = Database(load(config).storage.url)
        try:
            async with db.write() as conn:
                for sql, params in statements:
                    await conn.execute(text(sql), params)
        finally:
            await db.dispose()

    asyncio.run(run())


def test_card_shows_custom_fields_deadlines_and_reminders(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("name,email,telegram,city\nАнна,anna@example.com,@anna_p,Москва\n")
    assert hub("import", "--config", config, str(rows)) == 0
    at = "2026-01-05 09:00:00.000000"
    _insert(
        config,
        [
            (
                "INSERT INTO managers (id, name, telegram_id, role, capacity, active, away, "
                "created_at) VALUES (1, 'Maria', 1001, 'manager', 20, 1, 0, :at)",
                {"at": at},
            ),
            (
                "INSERT INTO conversations (id, client_id, channel, account, status, assignee_id, "
                "subject, priority, created_at, updated_at, due_at) VALUES (7, 1, 'email', 'desk', "
                "'open', 1, 'Order 42', 'normal', :at, :at, '2026-01-05 11:30:00.000000')",
                {"at": at},
            ),
            (
                "INSERT INTO reminders (client_id, manager_id, due_at, text, kind, status, "
                "created_at, fired_count) VALUES (1, 1, '2026-01-06 10:00:00.000000', "
                "'call back', 'reminder', 'pending', :at, 0)",
                {"at": at},
            ),
        ],
    )
    capsys.readouterr()
    assert hub("card", "--config", config, "1") == 0
    card = capsys.readouterr().out
    assert "fields: city: Москва" in card
    assert "telegram @anna_p (unconfirmed" in card
    assert "#7 email open · Maria · answer due 2026-01-05 11:30 (missed) · Order 42" in card
    assert "reminders: 1\n  2026-01-06 10:00 Maria: call back" in card


def test_a_command_never_makes_a_new_empty_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Started from a folder of its own: the repository's data/ (./scripts/run's) is
    # no concern of this config.
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    path = tmp_path / "hub.toml"
    path.write_text('[admin]\ntoken = "t"\n[storage]\nurl = "sqlite+aiosqlite:///data/hub.db"\n')
    for command in (["card", "1"], ["duplicates"], ["campaign", "list"], ["report", "week"]):
        assert hub(command[0], "--config", str(path), *command[1:]) == 1, command
        err = capsys.readouterr().err
        assert f"no database at {tmp_path}/data/hub.db" in err, err
        assert "hub migrate --config" in err
    assert not (tmp_path / "data").exists()
    assert hub("migrate", "--config", str(path)) == 0
    assert (tmp_path / "data" / "hub.db").exists()  # next to the config, not in the cwd
    assert hub("duplicates", "--config", str(path)) == 0


def test_a_database_left_in_the_current_folder_is_named_with_what_to_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before issue 17 relative paths were read from the current folder: a hub
    started that way has its data there; the hub says so instead of starting anew."""
    home, old = tmp_path / "etc", tmp_path / "work"
    home.mkdir()
    (old / "data" / "attachments").mkdir(parents=True)
    (old / "data" / "hub.db").write_bytes(b"")
    (old / "data" / "mail-spool.db").write_bytes(b"")
    path = home / "hub.toml"
    path.write_text('[admin]\ntoken = "t"\n[storage]\nurl = "sqlite+aiosqlite:///data/hub.db"\n')
    monkeypatch.chdir(old)
    for command in ("check-config", "run", "card"):
        assert hub(command, "--config", str(path), *(["1"] if command == "card" else [])) == 2
        out = capsys.readouterr()
        problem = (out.out + out.err).strip()
        assert problem.startswith(
            f"storage.url: the database data/hub.db is in the current folder ({old})"
        )
        assert (
            f"Move data/hub.db, data/mail-spool.db, data/attachments from {old} to {home}"
            in problem
        )
    assert not (home / "data").exists()
