"""A throwaway PostgreSQL server on loopback for the tests, from the machine's own binaries.

Debian's `postgresql` package puts them in /usr/lib/postgresql/<version>/bin; `.ci/run`
installs it. PostgreSQL refuses to run as root, so as root the cluster belongs to the
`postgres` user the package creates. With no binaries the PostgreSQL tests are skipped, unless
REQUIRE_POSTGRES is set (as in CI), where that is an error.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path

_names = count(1)


def binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="bot-pg-"))
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._as: list[str] = []
        if os.geteuid() == 0:
            os.chmod(self.root, 0o777)
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def base_url(self) -> str:
        return f"postgresql://bot@127.0.0.1:{self.port}"

    def start(self) -> None:
        data = self.root / "data"
        subprocess.run(
            [*self._as, str(self.bin / "initdb"), "-D", str(data), "-U", "bot", "-A", "trust",
             "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True,
        )  # fmt: skip
        self._process = subprocess.Popen(
            [*self._as, str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=(self.root / "server.log").open("wb"),
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
            )
            if ready.returncode == 0:
                return
            if self._process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("PostgreSQL did not start:\n" + (self.root / "server.log").read_text())

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"test_{os.getpid()}_{next(_names)}"
        subprocess.run(
            [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "bot",
             name],
            check=True, capture_output=True,
        )  # fmt: skip
        return f"{self.base_url}/{name}"

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=20)
            if self._process.poll() is None:
                self._process.kill()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer | None]:
    bin_dir = binaries()
    if bin_dir is None:
        if os.environ.get("REQUIRE_POSTGRES"):
            raise RuntimeError("REQUIRE_POSTGRES is set but no PostgreSQL binaries were found")
        yield None
        return
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
