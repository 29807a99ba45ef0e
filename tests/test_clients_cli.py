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
    assert "added 2, updated 0, refused 0" in capsys.readouterr().out
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
