"""The whole production shape on one machine: ``make cluster``.

nginx (8080, 8443) → CLUSTER_INSTANCES gunicorn instances (8001, ...) →
PgBouncer in transaction mode (6432) → a private PostgreSQL primary (5433)
and its streaming replica (5434), all under ``.cluster/``. The configuration
is the operator's files in ``deploy/``, rendered for these ports. See
README "Scale-out" and docs/deployment.md.

    python -m cluster up | status | down | clean | restart-apps
"""
