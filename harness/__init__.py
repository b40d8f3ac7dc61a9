"""Run the app's real processes — gunicorn, ``flask`` commands, a whole
local cluster — as an operator would, on free ports, always stopped.
Shared by the tests and the benchmark (bench/ must not import tests/)."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class Started:
    """A context manager for something started: ``start()`` on entry
    (``close()`` at once if that fails half-way), ``close()`` on exit."""

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()
