"""CSV import, through the web form (file and textarea) and the CLI."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import event, text

from harness.flask_cli import run_flask
from myapp import db, importing, users
from myapp.config import MAX_UPLOAD_BYTES
from tests.support.commands import assert_one_error_line
from tests.support.database import assert_nothing_written
from tests.support.forms import csrf_token, upload

# Line numbers are the file's own, counting the header as line 1.
MIXED = (
    "name,email\n"                          # 1
    "Good One,one@example.com\n"            # 2
    ",noname@example.com\n"                 # 3 invalid: empty name
    "Bad Mail,not-an-email\n"               # 4 invalid: address
    "\n"                                    # 5 blank: skipped, not rejected
    "Existing,EXISTING@example.com\n"       # 6 duplicate of a user in the database
    "Good Two,two@example.com\n"            # 7
    "Again,ONE@example.com\n"               # 8 duplicate of line 2
    "Extra,extra@example.com,surplus\n"     # 9 extra column
    '"Quoted, Name",quoted@example.com\n'   # 10 good, with a comma inside quotes
    "Short\n"                               # 11 missing column
)
MIXED_REJECTED = [
    (3, "Enter a name."),
    (4, "Enter a valid email address."),
    (6, "already exists"),
    (8, "Duplicate of line 2."),
    (9, "Expected 2 columns, found 3."),
    (11, "Expected 2 columns, found 1."),
]
MIXED_CREATED = {"one@example.com", "two@example.com", "quoted@example.com"}


@pytest.fixture
def existing_user(make_user):
    return make_user("Existing", "existing@example.com")


def assert_mixed_report(html):
    assert "created 3, rejected 6" in html
    for line, reason in MIXED_REJECTED:
        assert f"line {line}</td><td>" in html
        row = html[html.index(f"line {line}</td>"):]
        assert reason in row[: row.index("</tr>")]


def test_import_form_has_file_and_textarea(client):
    html = client.get("/users/import").get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in html
    assert 'type="file"' in html and 'name="file"' in html
    assert "<textarea" in html and 'name="csv"' in html and 'name="csrf_token"' in html


@pytest.mark.parametrize("field", ["file", "csv"])
def test_mixed_file_keeps_good_rows_and_reports_each_bad_one(client, existing_user, field, tables):
    response = upload(client, MIXED, field=field)
    assert response.status_code == 200
    assert_mixed_report(response.get_data(as_text=True))
    assert tables.emails() == MIXED_CREATED | {"existing@example.com"}
    assert tables.counts() == (4, 4)  # every created user has its audit row


def test_import_audit_rows_record_their_source_line(client, tables):
    upload(client, "name,email\nA,a@example.com\nB,b@example.com\n")
    with tables.connect() as conn:
        lines = conn.execute(
            text("SELECT detail->>'email', (detail->>'line')::int FROM audit_events ORDER BY 2")
        ).all()
    assert lines == [("a@example.com", 2), ("b@example.com", 3)]


@pytest.mark.commits  # a `flask` subprocess must see the existing user
def test_cli_imports_exactly_as_the_web_does(database_url, existing_user, tmp_path, tables):
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED)
    result = run_flask("import-users", str(path), database_url=database_url)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "created 3, rejected 6"
    assert [int(line.split(":")[0].removeprefix("line ")) for line in lines[1:]] == [
        line for line, _ in MIXED_REJECTED
    ]
    for output, (_, reason) in zip(lines[1:], MIXED_REJECTED):
        assert reason in output
    assert tables.emails() == MIXED_CREATED | {"existing@example.com"}


def test_cli_exit_0_when_nothing_is_rejected(database_url, tmp_path):
    path = tmp_path / "good.csv"
    path.write_text("name,email\nA,a@example.com\n")
    result = run_flask("import-users", str(path), database_url=database_url)
    assert result.returncode == 0
    assert result.stdout.strip() == "created 1, rejected 0"


def test_utf8_bom_and_crlf_are_accepted(client, tables):
    response = upload(client, "\ufeffname,email\r\nZoë,zoe@example.com\r\n".encode())
    assert "created 1, rejected 0" in response.get_data(as_text=True)
    assert tables.emails() == {"zoe@example.com"}


def test_header_columns_may_be_reordered_and_padded(client):
    response = upload(client, " Email , NAME \nx@example.com,X\n")
    assert "created 1, rejected 0" in response.get_data(as_text=True)


def test_multiline_quoted_field_is_reported_at_its_first_line(client):
    content = 'name,email\n"Two\nLines",two@example.com\nOk,ok@example.com\n'
    html = upload(client, content).get_data(as_text=True)
    assert "created 1, rejected 1" in html and "line 2</td>" in html


FORMAT_ERRORS = {
    "no header": ("Ada,ada@example.com\n", "header"),
    "wrong header": ("first,last\nA,B\n", "header"),
    "empty file": ("", "empty"),
    "only blank lines": ("\n\n\n", "empty"),
    "latin-1": ("name,email\nJos\xe9,jose@example.com\n".encode("latin-1"), "UTF-8"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "UTF-8"),
    "bad bytes late": (
        ("name,email\n" + "".join(f"U{n},u{n}@example.com\n" for n in range(3000))).encode()
        + b"Late,\xff\xfe@example.com\n",
        "UTF-8",
    ),
}


@pytest.mark.parametrize("case", FORMAT_ERRORS, ids=list(FORMAT_ERRORS))
def test_unreadable_input_is_422_and_writes_nothing(client, existing_user, case, tables):
    content, message = FORMAT_ERRORS[case]
    with assert_nothing_written(tables):
        response = upload(client, content)
        html = response.get_data(as_text=True)
        assert response.status_code == 422
        assert message in html and "Nothing was imported" in html


@pytest.mark.parametrize("case", ["no header", "latin-1", "bad bytes late"])
def test_cli_unreadable_input_is_exit_2_and_writes_nothing(database_url, tmp_path, case, tables):
    content, message = FORMAT_ERRORS[case]
    path = tmp_path / "bad.csv"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with assert_nothing_written(tables):
        result = run_flask("import-users", str(path), database_url=database_url)
        assert result.returncode == 2
        assert message in result.stderr and "Traceback" not in result.stderr


def test_cli_missing_file_is_exit_2(database_url):
    result = run_flask("import-users", "/no/such/file.csv", database_url=database_url)
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "Traceback" not in result.stderr


def test_nothing_submitted_is_422(client, tables):
    token = csrf_token(client, "/users/import")
    with assert_nothing_written(tables):
        response = client.post("/users/import", data={"csrf_token": token, "csv": "   "},
                               content_type="multipart/form-data")
        assert response.status_code == 422
        assert "Choose a CSV file" in response.get_data(as_text=True)


def test_upload_over_5_mb_is_413_and_writes_nothing(client, tables):
    big = "name,email\n" + "".join(f"User {n},user{n}@example.com\n" for n in range(200_000))
    assert len(big) > 5 * 1024 * 1024
    with assert_nothing_written(tables):
        response = upload(client, big)
        assert response.status_code == 413


def test_the_5_mb_limit_is_the_files_own_size(client, tables):
    """Up to 5 MiB of file is imported, however much the form around it adds;
    one byte more is 413, with nothing written."""
    rows = "name,email\nA,a@example.com\n"
    largest = rows + "\n" * (MAX_UPLOAD_BYTES - len(rows))  # blank lines are skipped
    with assert_nothing_written(tables):
        too_big = upload(client, largest + "\n")
        assert too_big.status_code == 413
    response = upload(client, largest)
    assert response.status_code == 200
    assert "created 1, rejected 0" in response.get_data(as_text=True)


def test_pasted_csv_larger_than_werkzeugs_default_form_limit_is_accepted(client, tables):
    rows = 20_000  # ~700 kB, above Werkzeug's 500 kB default for form fields
    text_csv = "name,email\n" + "".join(f"User {n},user{n}@example.com\n" for n in range(rows))
    response = upload(client, text_csv, field="csv")
    assert response.status_code == 200
    assert f"created {rows}, rejected 0" in response.get_data(as_text=True)
    assert tables.counts() == (rows, rows)


def test_import_without_csrf_is_400_and_writes_nothing(client, tables):
    with assert_nothing_written(tables):
        response = client.post("/users/import", data={"csv": "name,email\nA,a@example.com\n"},
                               content_type="multipart/form-data")
        assert response.status_code == 400


def test_nul_byte_rejects_its_row_alone(client, tables):
    html = upload(client, "name,email\nA\x00,a@example.com\nB,b@example.com\n").get_data(as_text=True)
    assert "created 1, rejected 1" in html and "line 2</td>" in html
    assert tables.emails() == {"b@example.com"}


@pytest.mark.commits  # another connection commits meanwhile
def test_a_batch_refused_by_the_database_is_split_to_find_the_bad_row(app, inspect_engine, tables):
    """Rows that pass the pre-check but collide in the database (here: an
    address taken by a concurrent transaction between the pre-check and the
    INSERT) are found by splitting the batch's savepoint; the rest is kept."""
    rows = "".join(f"User {n},user{n}@example.com\n" for n in range(10))
    raced = []

    def racer_commits_first(conn, cursor, statement, parameters, context, executemany):
        if "INSERT INTO users" in statement and not raced:
            raced.append(True)
            with inspect_engine.begin() as other:
                other.execute(text("INSERT INTO users (name, email) VALUES ('Racer', 'USER7@example.com')"))

    engine = db.engine()
    event.listen(engine, "before_cursor_execute", racer_commits_first)
    try:
        with app.app_context():
            report = importing.import_users(db.Session(), io.StringIO("name,email\n" + rows))
    finally:
        event.remove(engine, "before_cursor_execute", racer_commits_first)
    assert raced
    assert report.created == 9
    assert [(r.line, r.reason) for r in report.rejected] == [
        (9, users.EmailTaken.message)
    ]
    assert tables.counts() == (10, 9)  # 9 imported + the racer (no audit row)


def test_large_import_in_several_batches_counts_exactly(app, tables):
    lines = ["name,email\n"]
    expected_rejected = []
    for n in range(2500):
        line = n + 2
        if n and n % 97 == 0:
            lines.append(f"Dup {n},USER0@example.com\n")  # duplicate of line 2
            expected_rejected.append((line, "Duplicate of line 2."))
        elif n and n % 101 == 0:
            lines.append(f",user{n}@example.com\n")
            expected_rejected.append((line, "Enter a name."))
        else:
            lines.append(f"User {n},user{n}@example.com\n")
    with app.app_context():
        report = importing.import_users(db.Session(), io.StringIO("".join(lines)), batch_size=100)
    assert [(r.line, r.reason) for r in report.rejected] == expected_rejected
    assert report.created == 2500 - len(expected_rejected)
    assert tables.counts() == (report.created, report.created)


def test_a_field_over_the_csv_modules_default_limit_rejects_its_row_alone(client, tables):
    huge = "N" * 140_000  # Python's csv refuses fields over 131,072 characters by default
    content = f"name,email\nA,a@example.com\n{huge},huge@example.com\nB,b@example.com\n"
    response = upload(client, content)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "created 2, rejected 1" in html
    assert "line 3</td><td>The name must be 1 to 100 characters long (it has 140000)." in html
    assert tables.emails() == {"a@example.com", "b@example.com"}


# Addresses that Python's str.lower() and PostgreSQL's lower() may judge
# differently ("İ" is "i̇" in Python, "i" in PostgreSQL; Python lowers a final
# "Σ" to "ς", PostgreSQL to "σ"). The unique index uses the database's lower(),
# so whether the second is a repeat of the first is for the database to say.
CASE_PAIRS = {
    "dotted capital I first": ("İz1@example.com", "iz1@example.com"),
    "dotted capital I second": ("iz1@example.com", "İz1@example.com"),
    "final sigma": ("AΣ@example.com", "Aς@example.com"),
    "ascii": ("Mixed@Example.com", "mixed@example.COM"),
}


@pytest.mark.parametrize("batch_size", [1, 100], ids=["own batches", "one batch"])
@pytest.mark.parametrize("pair", CASE_PAIRS, ids=list(CASE_PAIRS))
def test_a_repeat_in_the_file_is_judged_by_the_databases_lower(app, pair, batch_size, tables):
    first, second = CASE_PAIRS[pair]
    with tables.connect() as conn:
        same = conn.scalar(text("SELECT lower(:a) = lower(:b)"), {"a": first, "b": second})
    content = f"name,email\nA,{first}\nB,{second}\n"
    with app.app_context():
        report = importing.import_users(db.Session(), io.StringIO(content), batch_size=batch_size)
    rejected = [(r.line, r.reason) for r in report.rejected]
    if same:
        assert (report.created, rejected) == (1, [(3, "Duplicate of line 2.")])
        assert tables.emails() == {first}
    else:
        assert (report.created, rejected) == (2, [])
        assert tables.emails() == {first, second}


# --- a database error of any kind is fatal (exit 2), on one line --------------


def test_cli_on_a_database_without_tables_is_exit_2_and_one_line(database_without_tables, tmp_path):
    path = tmp_path / "good.csv"
    path.write_text("name,email\nA,a@example.com\n")
    result = run_flask("import-users", str(path), database_url=database_without_tables)
    assert result.returncode == 2
    assert_one_error_line(result, 'relation "users" does not exist', "Nothing was imported")
