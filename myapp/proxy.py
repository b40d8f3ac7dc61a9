"""Behind a reverse proxy: believe its X-Forwarded-* headers, for one hop only.

nginx (deploy/nginx/myapp-locations.conf) sets X-Forwarded-For, -Proto,
-Host and -Port on every request it passes on, replacing whatever the client
sent. With ``BEHIND_PROXY=1`` Werkzeug's ``ProxyFix`` takes exactly the last
value of each — the one nginx wrote — so ``request.remote_addr`` is the
client's address, ``request.is_secure`` is true behind HTTPS (Flask-WTF's
Referer check, HSTS) and URLs carry the host the client asked for. Without
a proxy the setting stays off: any client could then claim any address.
Which host names are acceptable at all is Flask's ``TRUSTED_HOSTS``: a
request for any other host is a 400 (so a forged Host never reaches a
redirect or a link).
"""

from __future__ import annotations

from flask import Flask, current_app, send_from_directory
from werkzeug.exceptions import SecurityError
from werkzeug.middleware.proxy_fix import ProxyFix


def init_app(app: Flask) -> None:
    if app.config["BEHIND_PROXY"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1)
    app.register_error_handler(SecurityError, untrusted_host)


def untrusted_host(error: SecurityError):
    """A Host outside ``TRUSTED_HOSTS``: the site's 400 page.

    No URL can be built for a host the app does not serve, so the usual error
    template (``url_for`` everywhere) cannot render; this is the static page
    nginx gives the same request (static/errors/400.html).
    """
    page = send_from_directory(current_app.static_folder, "errors/400.html", max_age=0)
    page.status_code = 400
    return page
