"""Debian's prometheus-pgbouncer-exporter, taught PgBouncer 1.8's SHOW STATS.

Debian 12 ships the exporter at 1.7, written for PgBouncer before 1.8, and
PgBouncer at 1.18: SHOW STATS no longer has ``total_requests`` (PgBouncer 1.8
split it into ``total_xact_count`` and ``total_query_count``), and the
exporter fails at start with ``KeyError: 'total_requests'``. This reads the
query count under the exporter's own metric name (``pgbouncer_requests_total``)
and runs its command line unchanged. The cluster runs it with the interpreter
of the exporter's own script (Debian's python3, where the package lives).
"""

import sys

from prometheus_pgbouncer_exporter import cli
from prometheus_pgbouncer_exporter.collectors import StatsCollector

if "total_requests" in StatsCollector.metrics:
    StatsCollector.metrics = {
        ("total_query_count" if column == "total_requests" else column): described
        for column, described in StatsCollector.metrics.items()
    }

if __name__ == "__main__":
    sys.exit(cli.main())
