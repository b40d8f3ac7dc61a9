"""Who may do what: every route of the app's URL map, as every kind of
visitor, with both methods, against the contract's table.

``CONTRACT`` is written out here, independently of the decorators in the
app: a route added to the app without an entry here fails
``test_every_route_has_a_rule_in_the_contract``, and a view whose declared
rule differs from the contract fails ``test_declared_rules_match_the_contract``.
Every refusal (303 to the login page, 401, 403, 405) must leave every table
exactly as it was.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import quote

import pytest
from werkzeug.exceptions import MethodNotAllowed

from myapp.auth.access import PUBLIC, access_rule
from myapp.models import Role
from tests.support import accounts
from tests.support.forms import csrf_token

# endpoint: (who may use it, its answer to an allowed request that carries a
# CSRF token and no other data). Each endpoint has one method.
CONTRACT = {
    "static": (PUBLIC, 200),
    "users.healthz": (PUBLIC, 200),
    "metrics.expose": (PUBLIC, 200),
    "auth.login_form": (PUBLIC, 200),
    "auth.login": (PUBLIC, 422),  # no email, no password
    "auth.logout": (PUBLIC, 303),
    "users.index": (Role.VIEWER, 302),
    "users.list_users": (Role.VIEWER, 200),
    "users.show_user": (Role.VIEWER, 200),
    "users.new_user": (Role.EDITOR, 200),
    "users.create_user": (Role.EDITOR, 422),
    "users.edit_user": (Role.EDITOR, 200),
    "users.update_user": (Role.EDITOR, 400),  # no version: a damaged form
    "users.delete_user": (Role.EDITOR, 303),
    "users.import_form": (Role.EDITOR, 200),
    "users.import_users": (Role.EDITOR, 422),  # nothing to import
    "auth.list_accounts": (Role.ADMIN, 200),
    "auth.new_account": (Role.ADMIN, 200),
    "auth.create_account": (Role.ADMIN, 422),
    "auth.show_account": (Role.ADMIN, 200),
    "auth.change_role": (Role.ADMIN, 422),
    "auth.reset_password": (Role.ADMIN, 422),
    "auth.disable_account": (Role.ADMIN, 303),
    "auth.enable_account": (Role.ADMIN, 303),
}
# What each URL variable of the map is filled with.
SAMPLE_ARGUMENTS = {
    "user_id": lambda user_id: str(user_id),
    "account_id": lambda user_id: str(accounts.IDS[Role.VIEWER]),
    "filename": lambda user_id: "style.css",
}
VISITORS = [None, *Role]  # None: anonymous
URL_VARIABLE = re.compile(r"<(?:[^:>]+:)?([^>]+)>")


def test_every_route_has_a_rule_in_the_contract(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert endpoints - CONTRACT.keys() == set(), "routes the contract table does not cover"
    assert CONTRACT.keys() - endpoints == set(), "contract entries with no route"


def test_declared_rules_match_the_contract(app):
    with app.test_request_context():
        declared = {endpoint: access_rule(endpoint) for endpoint in app.view_functions}
    assert declared == {endpoint: rule for endpoint, (rule, _) in CONTRACT.items()}


def _paths(app) -> list[Callable[[int], str]]:
    """Every path of the URL map, to be filled in with an existing user's id."""
    rules = sorted({rule.rule for rule in app.url_map.iter_rules()})
    return [functools.partial(_fill, rule) for rule in rules]


def _fill(rule: str, user_id: int) -> str:
    return URL_VARIABLE.sub(lambda m: SAMPLE_ARGUMENTS[m.group(1)](user_id), rule)


class Expected(NamedTuple):
    status: int
    location: str | None = None  # checked when given
    refused: bool = True  # the request must write nothing


def _expected(app, path: str, method: str, visitor: Role | None) -> Expected:
    """What the contract gives ``visitor`` for ``method path``."""
    try:
        endpoint, _ = app.url_map.bind("localhost").match(path, method)
    except MethodNotAllowed:
        return Expected(405)
    rule, allowed_status = CONTRACT[endpoint]
    if rule != PUBLIC:
        if visitor is None and method == "GET":
            return Expected(303, f"/login?next={quote(path, safe='/')}")
        if visitor is None:
            return Expected(401)
        if not visitor.includes(rule):
            return Expected(403)
    return Expected(allowed_status, refused=False)


@pytest.mark.parametrize("visitor", VISITORS, ids=lambda v: v.value if v else "anonymous")
def test_every_route_answers_as_the_contract_says_and_refusals_write_nothing(
    app, new_client, tables, make_user, visitor
):
    connection = tables.bind  # the test's own transaction, rolled back at its end
    mismatches = []
    for method in ("GET", "POST"):
        for path_of in _paths(app):
            # Each request meets the same database: the standard accounts and
            # one user, made in a SAVEPOINT that is rolled back after it.
            case = connection.begin_nested()
            path = path_of(make_user().id)
            client = new_client(visitor)
            data = {"csrf_token": csrf_token(client, "/login")} if method == "POST" else None
            before = tables.snapshot()
            response = client.open(path, method=method, data=data)
            expected = _expected(app, path, method, visitor)
            location = response.headers.get("Location") if expected.location else None
            if (response.status_code, location) != (expected.status, expected.location):
                mismatches.append(f"{method} {path}: expected {expected.status} "
                                  f"{expected.location or ''}, got {response.status_code} {location or ''}")
            if expected.refused and tables.snapshot() != before:
                mismatches.append(f"{method} {path}: refused with {expected.status} but wrote")
            case.rollback()
    assert not mismatches, "\n".join(mismatches)
