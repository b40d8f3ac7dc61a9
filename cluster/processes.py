"""Pid files, listening ports, waiting, stopping, and running as the service user."""

from __future__ import annotations

import errno
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from cluster.settings import HOST


class ClusterError(RuntimeError):
    """A step failed; the message says which and where its log is."""


def read_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` (first line, as PostgreSQL writes it too)."""
    try:
        first_line = pid_file.read_text().split("\n", 1)[0].strip()
        return int(first_line)
    except (FileNotFoundError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    # A zombie still answers kill(0); it is as good as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def listening(port: int, host: str = HOST) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)  # polling a condition, not standing in for one


def stop_pid(pid: int | None, sig: signal.Signals = signal.SIGTERM, timeout: float = 40) -> bool:
    """Signal ``pid`` and wait until it is gone (SIGKILL after ``timeout``).

    Returns False when there was nothing to stop.
    """
    if not alive(pid):
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + 5
        time.sleep(0.05)
    return True


def as_user(user: str) -> dict:
    """subprocess keyword arguments that run a command as ``user``.

    Empty when we already are that user. The environment gets the user's
    HOME, so tools that look there (psql history, nginx) do not reach root's.
    """
    entry = pwd.getpwnam(user)
    if entry.pw_uid == os.geteuid():
        return {}
    env = {key: value for key, value in os.environ.items() if key in ("PATH", "LANG", "LC_ALL", "TZ")}
    env.update(HOME=entry.pw_dir, USER=user, LOGNAME=user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "env": env}


def run_as(user: str, command: list[str], log: Path | None = None, **kwargs) -> None:
    """Run ``command`` as ``user``; on failure raise with its output.

    Output goes to ``log`` when given (daemons started by the command inherit
    it instead of a pipe we would wait on forever), else it is captured.
    """
    options = {**as_user(user), **kwargs}
    if log is not None:
        with log.open("ab") as out:
            result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, check=False, **options)
        output = f"see {log}"
    else:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, check=False, **options)
        output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise ClusterError(f"{' '.join(map(str, command))} failed (exit {result.returncode}): {output}")


def give_to(user: str, *paths: Path, mode: int = 0o700) -> None:
    """Make ``paths`` (directories) exist, owned by ``user`` with ``mode``."""
    entry = pwd.getpwnam(user)
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(path, entry.pw_uid, entry.pw_gid)
        path.chmod(mode)


def chown_to(user: str, *paths: Path) -> None:
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(user)
    for path in paths:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def reachable_by(user: str, path: Path) -> None:
    """Let ``user`` traverse every parent of ``path``.

    Private servers run as an unprivileged user and must reach their data
    under the checkout; a parent that user cannot enter (say /root) gets the
    search bit for others (``o+x``: enter, not list), and we say so.
    """
    entry = pwd.getpwnam(user)
    if entry.pw_uid == os.geteuid():
        return
    for parent in reversed(path.resolve().parents):
        stat = parent.stat()
        if stat.st_mode & 0o001 or stat.st_uid == entry.pw_uid:
            continue
        try:
            parent.chmod(stat.st_mode | 0o001)
        except OSError as err:
            raise ClusterError(f"{user} cannot enter {parent}: {os.strerror(err.errno or errno.EPERM)}") from None
        print(f"cluster: made {parent} enterable by others (o+x) so {user} can reach {path}")
