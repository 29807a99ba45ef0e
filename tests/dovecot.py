"""A throwaway Dovecot IMAP server (RFC 3501) on loopback for the test suite.

Debian's ``dovecot-imapd``, started with its own config file in a temporary
folder: one static test user from a passwd-file, maildir storage in the same
folder; plain IMAP on one port and implicit TLS (IMAPS) on another, with a
self-signed certificate for 127.0.0.1 made by ``openssl`` (``ca_file`` trusts
it). Stopped and removed at the end.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

DOVECOT = "/usr/sbin/dovecot"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DovecotServer:
    port: int
    root: str
    process: subprocess.Popen[bytes]
    tls_port: int = 0
    ca_file: str = ""
    user: str = "hub"
    password: str = "s3cret-test-password"
    host: str = "127.0.0.1"

    def log(self) -> str:
        try:
            with open(os.path.join(self.root, "dovecot.log"), errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


def _config(root: str, port: int, tls_port: int, owner: str, uid: int, gid: int) -> str:
    return f"""\
base_dir = {root}/run
state_dir = {root}/state
instance_name = hub-test-{port}
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {owner}
default_internal_group = {grp.getgrgid(gid).gr_name}
default_login_user = {owner}
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_uid = {uid}
mail_gid = {gid}
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service auth-worker {{
  user = {owner}
}}
service anvil {{
  chroot =
}}
"""


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            return s.recv(64).startswith(b"* OK")
    except OSError:
        return False


def start(timeout: float = 20.0) -> DovecotServer:
    if not os.path.exists(DOVECOT):
        raise RuntimeError(
            f"Dovecot is not installed (no {DOVECOT}); "
            "the test command installs Debian's dovecot-imapd package"
        )
    root = tempfile.mkdtemp(prefix="hub-dovecot-")
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        # Dovecot runs its helper processes and the mail user unprivileged.
        pw = pwd.getpwnam("dovecot")
        owner, uid, gid = pw.pw_name, pw.pw_uid, pw.pw_gid
    else:
        owner, uid, gid = pwd.getpwuid(os.geteuid()).pw_name, os.geteuid(), os.getegid()
    for sub in ("run", "state", "mail", "home"):
        os.makedirs(os.path.join(root, sub))
        os.chown(os.path.join(root, sub), uid, gid)
    port, tls_port = _free_port(), _free_port()
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", os.path.join(root, "key.pem"), "-out", os.path.join(root, "cert.pem")),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    os.chmod(os.path.join(root, "key.pem"), 0o644)
    server_user = DovecotServer.user
    server_password = DovecotServer.password
    with open(os.path.join(root, "passwd"), "w") as fh:
        fh.write(f"{server_user}:{{PLAIN}}{server_password}::::::\n")
    os.chmod(os.path.join(root, "passwd"), 0o644)
    config = os.path.join(root, "dovecot.conf")
    with open(config, "w") as fh:
        fh.write(_config(root, port, tls_port, owner, uid, gid))
    process = subprocess.Popen(
        [DOVECOT, "-F", "-c", config],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = DovecotServer(port, root, process, tls_port, os.path.join(root, "cert.pem"))
    deadline = time.monotonic() + timeout
    while not _accepts(port):
        if process.poll() is not None or time.monotonic() > deadline:
            err = b""
            if process.poll() is not None and process.stderr is not None:
                err = process.stderr.read()
            log = server.log()
            server.stop()
            raise RuntimeError(f"Dovecot did not start: {err.decode(errors='replace')} {log}")
        time.sleep(0.05)  # polling a condition (the port answers), bounded by the deadline
    return server
