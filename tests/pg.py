"""A throwaway PostgreSQL server on loopback for the test suite (Debian's package).

Started once per test session in a temporary folder, stopped and removed at the
end. Tests get a fresh database each, cloned from a migrated template.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); "
            "the test command installs Debian's postgresql package"
        )
    return os.path.dirname(found[-1])


@dataclass
class PgServer:
    port: int
    root: str
    bindir: str
    user: str = "hub"
    options: str = ""

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def halt(self) -> None:
        """Stop the server as a crash would (immediate mode), keeping its data."""
        _run_as_owner(
            [f"{self.bindir}/pg_ctl", "-D", f"{self.root}/data", "-m", "immediate", "-w", "stop"]
        )

    def resume(self) -> None:
        """Start a halted server again on the same port and data (it recovers from WAL)."""
        _run_as_owner(
            [
                f"{self.bindir}/pg_ctl",
                "-D",
                f"{self.root}/data",
                "-o",
                self.options,
                "-l",
                f"{self.root}/log",
                "-w",
                "start",
            ]
        )

    def stop(self) -> None:
        _run_as_owner(
            [f"{self.bindir}/pg_ctl", "-D", f"{self.root}/data", "-m", "immediate", "-w", "stop"],
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def _run_as_owner(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[bytes]:
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=check, capture_output=True, timeout=120)


def start() -> PgServer:
    bindir = _bindir()
    root = tempfile.mkdtemp(prefix="hub-pg-")
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    server = PgServer(_free_port(), root, bindir)
    try:
        _run_as_owner(
            [
                f"{bindir}/initdb",
                "-D",
                f"{root}/data",
                "-U",
                server.user,
                "-A",
                "trust",
                "-E",
                "UTF8",
                # A UTF-8 character type, as production clusters have: full-text
                # search folds the case of every alphabet (C folds only ASCII).
                "--locale=C.UTF-8",
            ]
        )
        # synchronous_commit stays on: a commit the hub acknowledged must survive
        # the immediate stop of the fault tests (fsync off only skips the disk
        # flush, which matters for a machine crash, not a server process's death).
        options = server.options = (
            f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=on -c full_page_writes=off -c max_connections=300"
        )
        _run_as_owner(
            [
                f"{bindir}/pg_ctl",
                "-D",
                f"{root}/data",
                "-o",
                options,
                "-l",
                f"{root}/log",
                "-w",
                "start",
            ]
        )
    except subprocess.CalledProcessError as exc:
        log = ""
        if os.path.exists(f"{root}/log"):
            with open(f"{root}/log") as fh:
                log = fh.read()
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr.decode()} {log}") from exc
    return server
