"""A throwaway OpenLDAP ``slapd`` for development, tests and the benchmark.

Why here rather than in tests/: the benchmark and a development setup need
the very same server as the tests (same schema, same indexes as the ones
``docs/directory.md`` recommends), and it must fail loudly when ``slapd`` is
missing rather than let a run pretend the LDAP replica was exercised.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mssgw.directory.base import DirectoryError

SCHEMA_FILE = Path(__file__).parent / "schema" / "mssgw.schema"
SYSTEM_SCHEMAS = Path("/etc/ldap/schema")
MODULE_PATHS = (Path("/usr/lib/ldap"), Path("/usr/lib/openldap"), Path("/usr/libexec/openldap"))

#: The indexes docs/directory.md recommends: the gateway looks up by mail
#: equality; Thunderbird's autocomplete filter matches prefixes of
#: mail/cn/sn/givenName (``subinitial``), far cheaper to maintain than full
#: substring indexes over 536,000 entries.
INDEXES = (
    "index objectClass eq",
    "index mail eq,subinitial",
    "index cn,sn,givenName subinitial",
    "index mssgwNationalId,mssgwStructureId,mssgwOwnerRef,mssgwSource eq",
)


@dataclass
class Slapd:
    """A running server: where to reach it and how to bind as its manager."""

    url: str
    suffix: str
    root_dn: str
    password: str
    pid: int
    workdir: Path

    def stop(self) -> None:
        """Stop by pid (never by name) and wait for it to go."""
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)


def find_slapd() -> str:
    for candidate in (shutil.which("slapd"), "/usr/sbin/slapd", "/usr/libexec/slapd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise DirectoryError("slapd not found: install OpenLDAP (Debian: apt-get install slapd)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(workdir: Path, suffix: str, root_dn: str, password: str) -> Path:
    """A slapd.conf: system schemas + ours, one mdb database, no fsync, writemap."""
    modules = next((p for p in MODULE_PATHS if (p / "back_mdb.so").exists()), None)
    (workdir / "db").mkdir(parents=True, exist_ok=True)
    lines = [f"include {SYSTEM_SCHEMAS / n}.schema" for n in ("core", "cosine", "inetorgperson")]
    lines += [
        f"include {SCHEMA_FILE}",
        f"pidfile {workdir / 'slapd.pid'}",
        f"argsfile {workdir / 'slapd.args'}",
        "sizelimit unlimited",
    ]
    if modules is not None:
        lines += [f"modulepath {modules}", "moduleload back_mdb"]
    lines += [
        "database mdb",
        "maxsize 4294967296",
        f'suffix "{suffix}"',
        f'rootdn "{root_dn}"',
        f"rootpw {password}",
        f"directory {workdir / 'db'}",
        "dbnosync",
        # Dirty pages are written in place through the map instead of one
        # pwrite() per page per commit: the kernel write path was ~60 % of
        # slapd's CPU during a load (every add is its own transaction).
        "envflags writemap",
        *INDEXES,
        # Unlisted BALs (SPEC BAL-2): bound users (the gateway) read them,
        # anonymous address-book searches do not see them.
        "access to filter=(mssgwListeRouge=TRUE) by users read by * none",
        "access to * by * read",
    ]
    conf = workdir / "slapd.conf"
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return conf


def start(workdir: Path, suffix: str = "dc=mssante,dc=test", password: str = "secret") -> Slapd:
    """Start slapd on a free loopback port and wait until it answers."""
    binary = find_slapd()
    root_dn = f"cn=admin,{suffix}"
    conf = write_config(workdir, suffix, root_dn, password)
    check = subprocess.run(
        [binary, "-T", "test", "-u", "-f", str(conf)], capture_output=True, text=True
    )
    if check.returncode != 0:
        raise DirectoryError(f"slapd rejected its configuration: {check.stderr.strip()[-500:]}")
    port = _free_port()
    url = f"ldap://127.0.0.1:{port}"
    subprocess.run([binary, "-f", str(conf), "-h", f"{url}/"], check=True,
                   capture_output=True)
    pid = _wait_for_pid(workdir / "slapd.pid")
    _wait_for_port(port)
    server = Slapd(url, suffix, root_dn, password, pid, workdir)
    _create_suffix(server)
    return server


def _wait_for_pid(path: Path) -> int:
    for _ in range(200):
        if path.exists() and path.read_text().strip():
            return int(path.read_text().strip())
        time.sleep(0.025)
    raise DirectoryError(f"slapd did not write {path}")


def _wait_for_port(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.025)
    raise DirectoryError(f"slapd is not listening on port {port}")


def _create_suffix(server: Slapd) -> None:
    import ldap3

    dc = server.suffix.split(",")[0].split("=")[1]
    conn = ldap3.Connection(server.url, server.root_dn, server.password, auto_bind=True)
    try:
        conn.add(server.suffix, ["dcObject", "organization"], {"dc": dc, "o": dc})
    finally:
        conn.unbind()
