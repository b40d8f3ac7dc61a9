"""Prometheus for the tests: read a scrape, run promtool, run a real server.

Debian's ``prometheus`` package (scripts/install-system-deps) provides both
``/usr/bin/prometheus`` and ``/usr/bin/promtool``.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from harness import PROJECT_ROOT, Started
from harness.gunicorn import free_port

RULES_DIR = PROJECT_ROOT / "deploy" / "prometheus"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def scrape_text(base_url: str, **kwargs) -> str:
    response = requests.get(f"{base_url}/metrics", timeout=10, **kwargs)
    response.raise_for_status()
    return response.text


class Scrape:
    """One scrape, parsed: ``scrape.value("myapp_http_requests_total", route="/users")``
    sums every sample of that name whose labels include the given ones."""

    def __init__(self, text: str):
        self.text = text
        self.samples = [
            sample
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def matching(self, name: str, **labels: str) -> list:
        return [s for s in self.samples
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]

    def value(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.matching(name, **labels))


def scrape(base_url: str) -> Scrape:
    return Scrape(scrape_text(base_url))


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)


class PrometheusAPI:
    """Questions to a running Prometheus at ``url`` (the tests' own, or the cluster's)."""

    def __init__(self, url: str):
        self.url = url

    def targets(self) -> list[dict]:
        response = requests.get(f"{self.url}/api/v1/targets", timeout=10)
        response.raise_for_status()
        return response.json()["data"]["activeTargets"]

    def query(self, promql: str) -> list[dict]:
        response = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def wait_for(self, promql: str, predicate, timeout: float = 30.0) -> list[dict]:
        """Query until ``predicate(result)`` holds; the last result, or AssertionError."""
        deadline = time.monotonic() + timeout
        result = self.query(promql)
        while not predicate(result):
            if time.monotonic() > deadline:
                raise AssertionError(f"{promql!r} never satisfied; last result {result}")
            time.sleep(0.5)  # Prometheus scrapes every second: poll its answers
            result = self.query(promql)
        return result


def rule_with_for(rules_text: str, alert: str, duration: str) -> str:
    """``rules_text`` with the ``for:`` of ``alert`` set to ``duration``,
    every other line (its expression and threshold) as it is."""
    lines = rules_text.splitlines(keepends=True)
    start = next(n for n, line in enumerate(lines) if line.strip() == f"- alert: {alert}")
    for n in range(start + 1, len(lines)):
        if lines[n].strip().startswith("- alert:"):
            break
        if lines[n].strip().startswith("for:"):
            indent = lines[n][: len(lines[n]) - len(lines[n].lstrip())]
            lines[n] = f"{indent}for: {duration}\n"
            return "".join(lines)
    raise ValueError(f"alert {alert} has no for: clause")


class PrometheusServer(PrometheusAPI, Started):
    """A real Prometheus on a free port with its own temporary storage.

    Scrapes ``targets`` (host:port strings) every second as job ``myapp``,
    with the alert rules of deploy/prometheus/. Always stopped on exit.
    """

    def __init__(self, targets: list[str], ready_timeout: float = 30.0,
                 rule_texts: dict[str, str] | None = None):
        """``rule_texts``: rule files by name, written for this server, in
        place of deploy/prometheus/'s own."""
        self.port = free_port()
        super().__init__(f"http://127.0.0.1:{self.port}")
        self.dir = Path(tempfile.mkdtemp(prefix="prometheus-test-"))
        self.ready_timeout = ready_timeout
        rule_files = sorted(RULES_DIR.glob("*.rules.yml"))
        if rule_texts is not None:
            rule_files = [self.dir / name for name in rule_texts]
            for path, text in zip(rule_files, rule_texts.values()):
                path.write_text(text)
        config = {  # JSON is YAML: no YAML writer needed
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": "myapp", "static_configs": [{"targets": targets}]}],
        }
        self.config_file = self.dir / "prometheus.yml"
        self.config_file.write_text(json.dumps(config))
        self.log = self.dir / "prometheus.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [PROMETHEUS, f"--config.file={self.config_file}",
                 f"--storage.tsdb.path={self.dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited early:\n{self.output()}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)  # polling for readiness
        raise RuntimeError(f"prometheus did not become ready:\n{self.output()}")

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
