"""Slow clients against one instance directly and through nginx.

64 connections start a request and never finish its headers, and 32 never
finish a form body, while 10 ordinary visitors load the list. Straight at
gunicorn, each slow connection can hold one of an instance's 8 threads;
through nginx, which reads the whole request before passing it on, they
cost the instances nothing. The test asserts the nginx side (every visitor
served) and that the instance attacked directly serves everyone once the
attackers leave; the figures of both are printed at the end and quoted in
docs/deployment.md. The attackers and visitors are those of
tests/faults/test_slow_clients.py (tests/support/slowclients.py).
"""

from __future__ import annotations

import pytest

from tests.support import fault_report
from tests.support.http import Browser
from tests.support.slowclients import SlowClients, Visits, visit

pytestmark = [pytest.mark.cluster, pytest.mark.server]

SLOW_HEADERS, SLOW_BODIES = 64, 32
VISITORS, PATIENCE = 10, 5.0
# For "everyone is served" with no attack: generous, since the machine may be
# busy; it costs time only if the server is slow.
PATIENCE_TO_SERVE = 15.0


def visits_under_attack(port: int, cookie: str) -> Visits:
    with SlowClients(port, "slowloris", SLOW_HEADERS), \
            SlowClients(port, "slow POST body", SLOW_BODIES):
        return visit(port, VISITORS, PATIENCE, cookie=cookie)


def test_slow_clients_hold_no_instance_thread_behind_nginx(cluster):
    direct_port, nginx_port = cluster.app_port(1), cluster.ports["http"]
    # The visitors are signed in, as the editor: every instance honours the cookie.
    cookie = Browser(cluster.url).cookie_header()
    # Warm up: templates, pooled connections.
    visit(nginx_port, VISITORS, PATIENCE_TO_SERVE, cookie=cookie)
    direct = visits_under_attack(direct_port, cookie)
    through_nginx = visits_under_attack(nginx_port, cookie)
    after = visit(direct_port, VISITORS, PATIENCE_TO_SERVE, cookie=cookie)  # the attackers have left
    fault_report.record(
        f"scale-out: {SLOW_HEADERS} slowloris + {SLOW_BODIES} slow POST body connections,"
        f" {VISITORS} visitors given {PATIENCE:.0f} s (2 workers x 4 threads per instance)",
        direct_to_one_instance=direct.summary,
        through_nginx=through_nginx.summary,
        direct_after=after.summary,
    )
    assert len(through_nginx.answered) == VISITORS, through_nginx.summary
    assert len(after.answered) == VISITORS, after.summary
