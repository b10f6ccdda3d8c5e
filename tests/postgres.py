"""A PostgreSQL server for the tests: the one at DRIFTCTL_TEST_POSTGRES_URL (default: the
local server, `postgres` user, trust authentication) if it answers, else a throwaway one
started here from the installed binaries (Debian's `postgresql` package: `make postgresql`).

The throwaway server: `initdb` into a fresh directory under /tmp, `postgres` on a free
loopback port with durability off (a test server), run as an unprivileged user when the
tests run as root (PostgreSQL refuses root), stopped and deleted afterwards; it dies with
the test process, even on kill -9. Nothing here skips: no server and no binaries is a failure
that says how to get them."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from driftctl.runtime.broker import die_with_parent, free_loopback_port

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
URL_VARIABLE = "DRIFTCTL_TEST_POSTGRES_URL"


class NoPostgres(Exception):
    """Neither a server that answers nor the binaries to start one."""


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether anything accepts a TCP connection at the URL's host and port."""
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=timeout).close()
        return True
    except OSError:
        return False


def usable(url: str) -> str | None:
    """None if the server at `url` lets us in and create databases, else why not."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            allowed = conn.execute("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user")
            if not allowed.fetchone()[0]:
                return "its user may not create databases"
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def binaries() -> Path:
    """The directory of `initdb` and `postgres`: Debian's newest /usr/lib/postgresql/N/bin, or PATH."""
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    found = debian[-1] if debian else shutil.which("initdb")
    if not found:
        raise NoPostgres(f"no PostgreSQL answers at {os.environ.get(URL_VARIABLE, DEFAULT_URL)} and no initdb is "
                         "installed to start one: `make postgresql` installs Debian's package")
    return Path(found).resolve().parent


def _account() -> dict:
    """Popen's user/group arguments: PostgreSQL will not run as root, so root runs it as the
    `postgres` account (Debian's package creates it) or else `nobody`."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    raise NoPostgres("running as root and no unprivileged account (postgres, nobody) to run PostgreSQL as")


@contextmanager
def throwaway_server(timeout: float = 60.0) -> Iterator[str]:
    """Start a private PostgreSQL; yield its admin URL; stop it and delete its files."""
    bindir = binaries()
    account = _account()
    root = Path(tempfile.mkdtemp(prefix="driftctl-postgres-"))  # under /tmp: reachable by the unprivileged user
    data = root / "data"
    if account:
        os.chown(root, account["user"], account["group"])
    try:
        init = subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                               "--no-sync", "--no-instructions"], capture_output=True, text=True, timeout=120,
                              cwd=root, **account)
        if init.returncode != 0:
            raise NoPostgres(f"initdb failed: {(init.stderr or init.stdout).strip()[-2000:]}")
        port = free_loopback_port()
        log = root / "postgres.log"
        with open(log, "wb") as out:
            if account:
                os.chown(log, account["user"], account["group"])
            server = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(root),
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=100"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root,
                preexec_fn=die_with_parent, **account)
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        try:
            deadline = time.monotonic() + timeout
            while (why := usable(url)) is not None:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise NoPostgres(f"the throwaway PostgreSQL did not start ({why}):\n"
                                     f"{log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.2)
            yield url
        finally:
            server.send_signal(signal.SIGINT)  # fast shutdown: no waiting for clients to leave
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[tuple[str, str]]:
    """Yield (admin URL, where it came from). The configured server if one answers there;
    a throwaway one when nothing answers, or when the default local server does not let
    the `postgres` user in. A configured URL that answers but refuses us is a failure."""
    configured = os.environ.get(URL_VARIABLE)
    url = configured or DEFAULT_URL
    if answers(url):
        why = usable(url)
        if why is None:
            yield url, "configured" if configured else "local"
            return
        if configured:
            raise NoPostgres(f"{URL_VARIABLE}={configured} answers but cannot be used: {why}")
    with throwaway_server() as own:
        yield own, "throwaway"
