"""prometheus_client's multiprocess mode, kept tidy across worker restarts.

Under gunicorn every worker process writes its metric values to its own
files in ``PROMETHEUS_MULTIPROC_DIR`` (``counter_<pid>.db``,
``histogram_<pid>.db``, ``gauge_liveall_<pid>.db``...), and whichever worker
answers ``/metrics`` reads them all and adds them up. gunicorn.conf.py points
the variable at a directory before anything imports prometheus_client (it
picks its storage at import time) and calls the functions here:

* :func:`wipe` when the master starts: values left by an earlier server must
  not be counted again.
* :func:`retire_worker` when a worker exits (``child_exit``, also after a
  SIGKILL): ``mark_process_dead`` drops its live gauges, and its counters and
  histograms are folded into one ``<type>_archive.db`` file per type. Totals
  then neither reset (the dead worker's counts are kept) nor pile up files
  (one archive, however many workers come and go).

Folding is two file operations (replace the archive, delete the worker's
file); a scrape in between would count the worker twice. So folding holds an
exclusive ``flock`` on a lock file in the directory and :func:`collect` a
shared one.
"""

from __future__ import annotations

import fcntl
import glob
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

LOCK_FILE = "fold.lock"  # not *.db: the collector reads every *.db file
# Types whose values outlive their process; their files are folded.
FOLDED_TYPES = ("counter", "histogram", "summary")


@contextmanager
def _locked(path: Path, operation: int) -> Iterator[None]:
    with open(path / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, operation)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def wipe(path: Path) -> None:
    """Create ``path`` if needed and delete every metric file in it.

    Only ``*.db`` files are removed, so a directory an operator chose (even a
    shared one by mistake) loses nothing else.
    """
    path.mkdir(parents=True, exist_ok=True)
    for metric_file in path.glob("*.db"):
        metric_file.unlink()


def retire_worker(pid: int, path: Path) -> None:
    """Fold a dead worker's files into the archives; drop its gauges."""
    mark_process_dead(pid, str(path))
    with _locked(path, fcntl.LOCK_EX):
        for typ in FOLDED_TYPES:
            worker_file = path / f"{typ}_{pid}.db"
            if worker_file.exists():
                _fold(worker_file, path / f"{typ}_archive.db")
        # Gauges in a non-live mode would describe a process that is gone.
        for leftover in glob.glob(str(path / f"gauge_*_{pid}.db")):
            os.remove(leftover)


def _fold(worker_file: Path, archive: Path) -> None:
    sources = [str(f) for f in (archive, worker_file) if f.exists()]
    # accumulate=False: histogram buckets stay per bucket, as stored on disk.
    merged = MultiProcessCollector.merge(sources, accumulate=False)
    draft = archive.with_suffix(".new")
    draft.unlink(missing_ok=True)
    values = MmapedDict(str(draft))
    try:
        for metric in merged:
            for sample in metric.samples:
                key = mmap_key(metric.name, sample.name, list(sample.labels),
                               list(sample.labels.values()), metric.documentation)
                values.write_value(key, sample.value, 0.0)
    finally:
        values.close()
    os.replace(draft, archive)
    worker_file.unlink()


def collect(path: Path) -> bytes:
    """Every worker's metrics (live and retired), in Prometheus' text format."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, str(path))
    with _locked(path, fcntl.LOCK_SH):
        return generate_latest(registry)
