"""The ceiling: a plain Flask "hello" served by the same gunicorn config.

``gunicorn -c gunicorn.conf.py bench.hello:app`` — nothing but Flask's own
request handling, so the app's pages can be compared with it as a ratio.
"""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return "hello"


@app.get("/healthz")
def healthz():
    # What harness/gunicorn.py polls before it says the server is ready.
    return {"status": "ok"}
