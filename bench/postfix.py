"""A throwaway Postfix instance for same-run SMTP baselines (issue 4).

Postfix is the reference MTA the issue compares port 25 with.  This starts
one from the Debian package's binaries with its own configuration, queue
and log directories under a temporary root, listening on one loopback port
with the same certificates and TLS profile as mssgw's operator listener:
STARTTLS required, a client certificate required and checked against the
same anchors, TLS 1.2 with the four MSSanté suites.  Mail is queued (and
fsynced, as Postfix always does before ``250``) and then delivered to the
``discard`` transport.  What it does not do that mssgw does: CRL checks,
the liste blanche binding, and storing in mailboxes.

Needs root (Postfix's master starts as root and drops to the ``postfix``
user) and the ``postfix`` package.  Nothing is installed or left running:
``stop`` ends the instance, the caller removes the directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

MASTER_CF = Path("/etc/postfix/master.cf")
MSSANTE_CIPHERS = (
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES128-SHA256"
)


def available() -> str | None:
    """None when a throwaway Postfix can run here, else why not."""
    if shutil.which("postfix") is None:
        return "postfix is not installed (Debian package 'postfix')"
    if os.geteuid() != 0:
        return "postfix's master must start as root"
    if not MASTER_CF.exists():
        return f"{MASTER_CF} is missing (the package's service table)"
    return None


class ThrowawayPostfix:
    """One Postfix instance under ``root``, discarding what it accepts."""

    def __init__(self, root: Path, manifest: dict[str, Any], domain: str, port: int) -> None:
        self.root = root
        self.config = root / "conf"
        self.queue = root / "queue"
        self.port = port
        self._main_cf = _main_cf(root, manifest, domain)

    def start(self, timeout: float = 30.0) -> None:
        self.config.mkdir(parents=True)
        self.queue.mkdir()
        (self.root / "data").mkdir()
        shutil.chown(self.root / "data", user="postfix")
        _traversable(self.root)
        (self.config / "main.cf").write_text(self._main_cf)
        (self.config / "master.cf").write_text(_master_cf(self.port))
        subprocess.run(
            ["postfix", "-c", str(self.config), "start"],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.master_pid() is not None and _listening(self.port):
                return
            time.sleep(0.1)
        raise RuntimeError(f"postfix did not listen on 127.0.0.1:{self.port}: {self.log()[-2000:]}")

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.config), "stop"], capture_output=True, timeout=60)
        pid = self.master_pid()
        deadline = time.monotonic() + 30
        while pid is not None and Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def master_pid(self) -> int | None:
        try:
            return int((self.queue / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def cpu_seconds(self) -> float:
        """CPU of the whole instance so far: the master, its live children,
        and the children it has reaped (``cutime``/``cstime``)."""
        master = self.master_pid()
        if master is None:
            return 0.0
        total = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid, ppid = int(stat.parent.name), int(fields[1])
            if pid == master or ppid == master:
                total += sum(int(f) for f in fields[11:15])
        return total / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        try:
            return (self.root / "maillog").read_text(errors="replace")
        except OSError:
            return ""


def _traversable(path: Path) -> None:
    """Let the ``postfix`` user reach ``path`` (temporary directories are 0700)."""
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if directory.stat().st_uid == os.geteuid() and not mode & 0o001:
            directory.chmod(mode | 0o011)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _main_cf(root: Path, manifest: dict[str, Any], domain: str) -> str:
    op = manifest["operators"][0]
    return f"""\
compatibility_level = 3.6
queue_directory = {root / "queue"}
data_directory = {root / "data"}
maillog_file = {root / "maillog"}
maillog_file_prefixes = {root}
mail_owner = postfix
setgid_group = postdrop
myhostname = {op["host"]}
mydestination = {domain}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
local_recipient_maps =
local_transport = discard:
default_transport = discard:
relay_transport = discard:
message_size_limit = 52428800
default_process_limit = 200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_tls_cert_file = {op["certificate"]}
smtpd_tls_key_file = {op["key"]}
smtpd_tls_CAfile = {manifest["anchors"]}
smtpd_tls_security_level = encrypt
smtpd_tls_ask_ccert = yes
smtpd_tls_req_ccert = yes
smtpd_tls_mandatory_protocols = >=TLSv1.2, <=TLSv1.2
smtpd_tls_protocols = >=TLSv1.2, <=TLSv1.2
smtpd_tls_mandatory_ciphers = high
tls_high_cipherlist = {MSSANTE_CIPHERS}
smtpd_tls_session_cache_database =
smtpd_tls_loglevel = 0
"""


def _master_cf(port: int) -> str:
    """The package's service table, chroot off, smtpd on our loopback port only."""
    lines = []
    for line in MASTER_CF.read_text().splitlines():
        fields = line.split()
        if line[:1].isspace() or line.startswith("#") or len(fields) < 8:
            lines.append(line)
            continue
        if fields[1] == "inet":  # smtp and any other network listener
            continue
        fields[4] = "n"  # chroot would need a copy of /etc inside our queue
        lines.append("  ".join(fields))
    lines.append(f"127.0.0.1:{port} inet n - n - - smtpd")
    return "\n".join(lines) + "\n"
