"""The config: the example loads, every problem names its key, secrets stay hidden."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from hub.config import Config, load, parse
from hub.kernel.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(data)
    assert info.value.problems, "a ConfigError must list its problems"
    return info.value.problems


def minimal(**sections: Any) -> dict[str, Any]:
    """The smallest valid config, with ``sections`` merged over it."""
    data: dict[str, Any] = {"admin": {"token": "secret-token"}}
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(name), dict):
            data[name] = {**data[name], **value}
        else:
            data[name] = value
    return data


def manager(telegram_id: int, **fields: Any) -> dict[str, Any]:
    return {"name": f"Manager {telegram_id}", "telegram_id": telegram_id, **fields}


@pytest.fixture
def no_hub_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example must be valid with no environment: drop every variable it reads."""
    for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", EXAMPLE.read_text("utf-8")):
        monkeypatch.delenv(name, raising=False)


# --- the example --------------------------------------------------------------


def test_example_loads_with_no_environment(no_hub_env: None) -> None:
    """Issue 17: the example shows the hub's job on loopback: a form and SMTP to try."""
    config = load(EXAMPLE)
    assert config.storage.url == f"sqlite+aiosqlite:///{ROOT}/data/hub.db"
    assert config.storage.attachments_dir == str(ROOT / "data" / "attachments")
    assert config.email.spool == str(ROOT / "data" / "mail-spool.db")
    assert config.admin.token.get_secret_value() == "change-me-please"
    assert config.admin.listen == "127.0.0.1:8080"
    assert config.telegram.enabled is False
    assert config.email.smtp.listen == "127.0.0.1:2525"
    assert "localhost" in config.email.smtp.domains
    assert config.email.imap == []
    assert config.email.outbound is None
    assert config.webform.listen == "127.0.0.1:8082"
    assert 1 <= len(config.managers) <= 2


def test_example_names_the_readmes_environment_variables() -> None:
    """Issue 17: the README and the example name the same variables, all HUB_-prefixed."""
    example = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", EXAMPLE.read_text("utf-8")))
    example.discard("NAME")  # the syntax, explained
    readme = set(re.findall(r"\b(HUB_[A-Z_]+)\b", (ROOT / "README.md").read_text("utf-8")))
    assert all(name.startswith("HUB_") for name in example), example
    secrets = {n for n in example if n.endswith(("TOKEN", "PASSWORD", "SECRET"))}
    assert secrets <= readme, secrets - readme
    for name in readme & {"HUB_TELEGRAM_TOKEN", "HUB_SMTP_PASSWORD", "HUB_ADMIN_TOKEN"}:
        assert name in example


def test_example_first_form_is_a_contact_form_of_the_standard_fields(no_hub_env: None) -> None:
    form = load(EXAMPLE).webform.forms[0]
    assert [f.name for f in form.fields] == ["name", "email", "phone", "message"]


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key path of a config model: ``telegram.token``, ``managers.hours``, …"""
    out = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        out.append(key)
        annotation = field.annotation
        inner = [annotation, *getattr(annotation, "__args__", ())]
        for candidate in inner:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                out.extend(_keys(candidate, f"{key}."))
    return out


def _uncommented(text: str) -> str:
    """The example with its commented-out settings (``# key = …``, ``# [table]``) switched on."""
    setting = re.compile(r"^# ?((?:\[|[A-Za-z_]+ = ).*)$")
    return "\n".join(setting.sub(r"\1", line) for line in text.splitlines())


def _written_keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for key, value in data.items():
        out.add(f"{prefix}{key}")
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict):
                out |= _written_keys(item, f"{prefix}{key}.")
    return out


def test_example_documents_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key of the model is in the example, set or commented out, and nothing else is;
    with the commented-out settings switched on the example is still valid."""
    text = _uncommented(EXAMPLE.read_text("utf-8"))
    for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text):
        monkeypatch.setenv(name, "from-env")
    data = tomllib.loads(text)
    assert set(_keys(Config)) == _written_keys(data)
    config = parse(data)
    assert config.email.outbound is not None and config.email.imap
    assert config.telegram.webhook_listen is not None


# --- single problems, each naming its key -------------------------------------


def test_missing_admin_token() -> None:
    assert problems({"admin": {"listen": "127.0.0.1:8080"}}) == ["admin.token: missing"]


def test_empty_admin_token() -> None:
    assert problems({"admin": {"token": ""}}) == ["admin.token: empty"]


@pytest.mark.parametrize(
    "url",
    ["data/hub.db", "mysql://user@localhost/hub", "sqlite:///data/hub.db", "postgresql://h/db"],
)
def test_storage_url_without_a_supported_scheme(url: str) -> None:
    [problem] = problems(minimal(storage={"url": url}))
    assert problem.startswith("storage.url: ")


def test_storage_url_names_the_unsupported_scheme() -> None:
    [problem] = problems(minimal(storage={"url": "mysql://user@localhost/hub"}))
    assert "mysql" in problem


@pytest.mark.parametrize(
    "url", ["sqlite+aiosqlite:///data/hub.db", "postgresql+asyncpg://hub:pw@db.example.com/hub"]
)
def test_storage_url_supported(url: str) -> None:
    assert parse(minimal(storage={"url": url})).storage.url == url


@pytest.mark.parametrize(
    "listen", ["127.0.0.1:99999", "localhost:http", "127.0.0.1:0", "8080", ":8080", "localhost"]
)
def test_bad_admin_listen(listen: str) -> None:
    [problem] = problems(minimal(admin={"listen": listen}))
    assert problem.startswith("admin.listen: ")


def test_bad_port_names_the_port() -> None:
    [problem] = problems(minimal(admin={"listen": "127.0.0.1:99999"}))
    assert "99999" in problem


@pytest.mark.parametrize("listen", ["127.0.0.1:1", "0.0.0.0:65535", "[::1]:8080", "hub.local:80"])
def test_good_admin_listen(listen: str) -> None:
    assert parse(minimal(admin={"listen": listen})).admin.listen == listen


def test_unknown_top_level_key() -> None:
    assert problems(minimal(colour="blue")) == ["colour: unknown key"]


def test_unknown_nested_key() -> None:
    assert problems(minimal(storage={"ulr": "x"})) == ["storage.ulr: unknown key"]


def test_unknown_key_in_a_list_item() -> None:
    data = minimal(managers=[manager(1), manager(2, telgram="x")])
    assert problems(data) == ["managers[1].telgram: unknown key"]


MANAGERS_MISSING = "managers: missing (telegram is on: a [[managers]] table with each telegram_id)"


def test_telegram_enabled_needs_token_staff_chat_and_managers() -> None:
    """Issue 17: every missing piece named at once, the managers too."""
    assert sorted(problems(minimal(telegram={"enabled": True}))) == [
        MANAGERS_MISSING,
        "telegram.staff_chat_id: missing",
        "telegram.token: missing",
    ]


def test_telegram_enabled_with_empty_token() -> None:
    data = minimal(
        telegram={"enabled": True, "token": "", "staff_chat_id": -100123}, managers=[manager(1)]
    )
    assert problems(data) == ["telegram.token: missing"]


def test_telegram_token_missing_names_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 17: as in the example, ``${HUB_TELEGRAM_TOKEN:-}`` with the variable unset."""
    monkeypatch.delenv("HUB_TELEGRAM_TOKEN", raising=False)
    telegram = {"enabled": True, "token": "${HUB_TELEGRAM_TOKEN:-}", "staff_chat_id": -1001}
    assert problems(minimal(telegram=telegram, managers=[manager(1)])) == [
        "telegram.token: missing (HUB_TELEGRAM_TOKEN is empty or not set)"
    ]


def test_telegram_disabled_needs_nothing() -> None:
    assert parse(minimal(telegram={"enabled": False, "mode": "webhook"})).telegram.token is None


def test_telegram_webhook_mode_needs_url_listen_and_secret() -> None:
    telegram = {"enabled": True, "token": "123:abc", "staff_chat_id": -100123, "mode": "webhook"}
    assert sorted(problems(minimal(telegram=telegram, managers=[manager(1)]))) == [
        "telegram.webhook_listen: missing",
        "telegram.webhook_secret: missing",
        "telegram.webhook_url: missing",
    ]
    complete = {
        **telegram,
        "webhook_url": "https://hub.example.com/tg",
        "webhook_listen": "127.0.0.1:8443",
        "webhook_secret": "s3cret",
    }
    assert parse(minimal(telegram=complete, managers=[manager(1)])).telegram.mode == "webhook"


def test_telegram_webhook_listen_is_checked() -> None:
    [problem] = problems(minimal(telegram={"webhook_listen": "127.0.0.1:70000"}))
    assert problem.startswith("telegram.webhook_listen: ")


def test_telegram_unknown_mode() -> None:
    [problem] = problems(minimal(telegram={"mode": "push"}))
    assert problem.startswith("telegram.mode: ")


# --- environment ---------------------------------------------------------------


def test_value_read_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_TEST_TOKEN", "from-env")
    config = parse({"admin": {"token": "${HUB_TEST_TOKEN}"}})
    assert config.admin.token.get_secret_value() == "from-env"


def test_environment_inside_a_longer_string(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_TEST_DB_PASSWORD", "pw")
    url = "postgresql+asyncpg://hub:${HUB_TEST_DB_PASSWORD}@db.example.com/hub"
    config = parse(minimal(storage={"url": url}))
    assert config.storage.url == "postgresql+asyncpg://hub:pw@db.example.com/hub"


def test_environment_default_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_TEST_TOKEN", raising=False)
    config = parse({"admin": {"token": "${HUB_TEST_TOKEN:-fallback}"}})
    assert config.admin.token.get_secret_value() == "fallback"


def test_environment_wins_over_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_TEST_TOKEN", "from-env")
    config = parse({"admin": {"token": "${HUB_TEST_TOKEN:-fallback}"}})
    assert config.admin.token.get_secret_value() == "from-env"


def test_environment_in_list_items(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_TEST_MANAGER_ID", "4242")
    config = parse(minimal(managers=[{"name": "A", "telegram_id": "${HUB_TEST_MANAGER_ID}"}]))
    assert config.managers[0].telegram_id == 4242


def test_missing_environment_variable_names_key_and_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HUB_TEST_UNSET", raising=False)
    found = problems(minimal(storage={"url": "postgresql+asyncpg://h/${HUB_TEST_UNSET}"}))
    assert any(p.startswith("storage.url: ") and "HUB_TEST_UNSET" in p for p in found), found


def test_missing_environment_variable_in_a_list_item(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_TEST_UNSET", raising=False)
    data = minimal(email={"imap": [{"host": "h", "user": "u", "password": "${HUB_TEST_UNSET}"}]})
    found = problems(data)
    key = "email.imap[0].password: "
    assert any(p.startswith(key) and "HUB_TEST_UNSET" in p for p in found), found


# --- managers ------------------------------------------------------------------


def test_managers_with_duplicate_telegram_id() -> None:
    [problem] = problems(minimal(managers=[manager(7), manager(8), manager(7)]))
    assert problem.startswith("managers")
    assert "7" in problem and "twice" in problem


def test_manager_needs_name_and_telegram_id() -> None:
    assert sorted(problems(minimal(managers=[{}]))) == [
        "managers[0].name: missing",
        "managers[0].telegram_id: missing",
    ]


@pytest.mark.parametrize("hours", ["Mon-Fri 9-18", "Xyz 09:00-18:00", "Mon 25:00-26:00", ""])
def test_manager_bad_hours(hours: str) -> None:
    [problem] = problems(minimal(managers=[manager(1, hours=hours)]))
    assert problem.startswith("managers[0].hours: ")
    assert len(problem) > len("managers[0].hours: ") + 5  # says what is wrong


def test_manager_good_hours_kept_as_text() -> None:
    hours = "Пн-Пт 09:00-18:00; Sat 10:00-14:00"
    assert parse(minimal(managers=[manager(1, hours=hours)])).managers[0].hours == hours


def test_manager_bad_timezone() -> None:
    [problem] = problems(minimal(managers=[manager(1), manager(2, timezone="Mars/Olympus")]))
    assert problem.startswith("managers[1].timezone: ")
    assert "Mars/Olympus" in problem


def test_hub_bad_timezone() -> None:
    [problem] = problems(minimal(hub={"timezone": "Europe/Atlantis"}))
    assert problem.startswith("hub.timezone: ")


def test_log_format_text_by_default_or_json() -> None:
    assert parse(minimal()).hub.log_format == "text"
    assert parse(minimal(hub={"log_format": "json"})).hub.log_format == "json"


def test_log_format_unknown() -> None:
    [problem] = problems(minimal(hub={"log_format": "xml"}))
    assert problem.startswith("hub.log_format: ")
    assert "'text'" in problem and "'json'" in problem and "'xml'" in problem


def test_working_hours_checked_alike_in_every_section() -> None:
    """One check of working hours: the hub's, a manager's, a rule's and a policy's."""
    bad = "Mon-Fri 9-18"
    found = problems(
        minimal(
            hub={"hours": bad},
            managers=[manager(1, hours=bad)],
            routing={"rules": [{"name": "r", "hours": bad}]},
            sla={"policies": [{"name": "p", "hours": bad}]},
        )
    )
    message = "expected e.g. 'Mon-Fri 09:00-18:00', got 'Mon-Fri 9-18'"
    assert found == [
        f"hub.hours: {message}",
        f"managers[0].hours: {message}",
        f"routing.rules[0].hours: {message}",
        f"sla.policies[0].hours: {message}",
    ]


def test_rule_and_policy_channels_named_as_in_the_toml() -> None:
    config = parse(
        minimal(
            routing={"rules": [{"name": "r", "channels": ["email", "webform"]}]},
            sla={"policies": [{"name": "p", "channels": ["telegram"]}]},
        )
    )
    assert config.routing.rules[0].channels == ["email", "webform"]
    assert config.sla.policies[0].channels == ["telegram"]
    [problem] = problems(minimal(routing={"rules": [{"name": "r", "channels": ["sms"]}]}))
    assert problem == (
        "routing.rules[0].channels[0]: Input should be 'telegram', 'email' or 'webform' (got 'sms')"
    )


def test_manager_unknown_role() -> None:
    [problem] = problems(minimal(managers=[manager(1, role="boss")]))
    assert problem.startswith("managers[0].role: ")


# --- forms ---------------------------------------------------------------------


def test_form_ids_unique() -> None:
    [problem] = problems(minimal(webform={"forms": [{"id": "a"}, {"id": "a"}]}))
    assert problem.startswith("webform.forms: ")


def test_form_id_characters() -> None:
    [problem] = problems(minimal(webform={"forms": [{"id": "a b"}]}))
    assert problem.startswith("webform.forms[0].id: ")


# --- several problems at once ---------------------------------------------------


def test_every_problem_reported_one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_TEST_UNSET", raising=False)
    data = {
        "admin": {"listen": "localhost:http"},
        "storage": {"url": "data/hub.db", "group_commit_ms": -1},
        "telegram": {"enabled": True, "staff_chat_id": -100, "token": "${HUB_TEST_UNSET}"},
        "managers": [manager(1, hours="always")],
        "bogus": True,
    }
    found = problems(data)
    for prefix in (
        "admin.listen: ",
        "admin.token: missing",
        "storage.url: ",
        "storage.group_commit_ms: ",
        "telegram.token: ",
        "managers[0].hours: ",
        "bogus: unknown key",
    ):
        assert any(p.startswith(prefix) for p in found), (prefix, found)
    key_path = re.compile(r"^[a-z_]+(?:\.[a-z_]+|\[\d+\])*: \S")
    assert all(key_path.match(p) and "\n" not in p for p in found), found


def test_load_reports_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "absent.toml")
    assert "cannot read" in info.value.problems[0]
    broken = tmp_path / "broken.toml"
    broken.write_text("[admin\ntoken = 1\n")
    with pytest.raises(ConfigError) as info:
        load(broken)
    assert "invalid TOML" in info.value.problems[0]


# --- secrets -------------------------------------------------------------------


def test_secrets_never_in_repr_or_str() -> None:
    data = minimal(
        admin={"token": "admin-SECRET-1"},
        telegram={"token": "123:tg-SECRET-2", "webhook_secret": "hook-SECRET-3"},
        email={
            "imap": [{"host": "h", "user": "u", "password": "imap-SECRET-4"}],
            "outbound": {"host": "h", "from": "a@b.c", "password": "smtp-SECRET-5"},
        },
    )
    config = parse(data)
    assert config.admin.token.get_secret_value() == "admin-SECRET-1"
    for text in (repr(config), str(config), repr(config.admin), str(config.model_dump())):
        assert "SECRET" not in text, text


def test_config_is_frozen() -> None:
    config = parse(minimal())
    with pytest.raises(ValueError):
        config.admin.listen = "0.0.0.0:1"  # type: ignore[misc]


# --- the command line ------------------------------------------------------------


def check_config(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "TELEGRAM_"))}
    return subprocess.run(
        [sys.executable, "-m", "hub", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
        check=False,
    )


def test_cli_check_config_accepts_the_example(tmp_path: Path) -> None:
    result = check_config(EXAMPLE, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_check_config_bad_storage_url(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[admin]\ntoken = "t"\n[storage]\nurl = "mysql://localhost/hub"\n')
    result = check_config(path, tmp_path)
    assert result.returncode == 2
    assert "storage.url:" in result.stdout + result.stderr


def test_cli_check_config_bad_port_and_missing_token(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[admin]\nlisten = "127.0.0.1:99999"\n')
    result = check_config(path, tmp_path)
    assert result.returncode == 2
    lines = (result.stdout + result.stderr).splitlines()
    assert any(line.startswith("admin.listen:") for line in lines), lines
    assert "admin.token: missing" in lines
