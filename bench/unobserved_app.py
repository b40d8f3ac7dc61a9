"""myapp without its observability — for ``bench/observability.py`` only.

The counter-example that measures what metrics, request ids and per-request
SQL accounting cost: the same app with the request middleware, the route
hook and the engine's pool/SQL instrumentation taken away (``/metrics``
still answers, with nothing of the app in it). Never deploy it.
"""

from myapp import create_app, db
from myapp.observability.request_context import RequestObserver, note_route

app = create_app()
assert isinstance(app.wsgi_app, RequestObserver)
app.wsgi_app = app.wsgi_app.wsgi_app
app.teardown_request_funcs[None].remove(note_route)
# Rebind the session registry to an engine built exactly like the app's,
# minus the pool class and listeners that feed the metrics.
db.Session.configure(bind=db.build_engine(app.config, instrumented=False))
