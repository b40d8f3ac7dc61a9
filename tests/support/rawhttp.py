"""HTTP/1.1 written byte for byte to a real server, for tests where framing
matters (chunked bodies, broken chunks) and no client library would send it."""

from __future__ import annotations

import http.client
import socket
import threading
from dataclasses import dataclass
from urllib.parse import urlencode

from tests.support.http import Browser


def chunked(body: bytes, piece: int = 64 * 1024) -> bytes:
    """``body`` in ``Transfer-Encoding: chunked`` framing, ``piece`` bytes a chunk."""
    chunks = [b"%x\r\n%s\r\n" % (len(body[at:at + piece]), body[at:at + piece])
              for at in range(0, len(body), piece)]
    return b"".join(chunks) + b"0\r\n\r\n"


# Ways a client can break chunked framing: each turns a body into bytes no
# server should take for a request body.
BROKEN_CHUNKS = {
    "size is not hex": lambda body: b"zz\r\n" + body + b"\r\n0\r\n\r\n",
    "chunk longer than its size": lambda body: b"%x\r\n" % (len(body) - 3) + body + b"\r\n0\r\n\r\n",
    "bad chunk extension": lambda body: b"%x;=\r\n" % len(body) + body + b"\r\n0\r\n\r\n",
    "last chunk without its blank line": lambda body: chunked(body)[:-2],
    "body cut mid-chunk": lambda body: chunked(body)[:len(body) // 2],
}


@dataclass
class RawResponse:
    status: int
    headers: http.client.HTTPMessage
    text: str


@dataclass
class SignedInForm:
    """What a browser holds after opening a form: its session cookie and CSRF token."""

    cookie: str
    token: str

    @classmethod
    def open(cls, base_url: str, page: str = "/users/new") -> SignedInForm:
        browser = Browser(base_url)
        token = browser.csrf_token(page)
        return cls("; ".join(f"{c.name}={c.value}" for c in browser.http.cookies), token)

    def urlencoded(self, fields: list[tuple[str, str]]) -> bytes:
        """The form's fields, url-encoded, the CSRF token first."""
        return urlencode([("csrf_token", self.token), *fields]).encode()


def post(port: int, path: str, body: bytes, *, cookie: str = "",
         content_type: str = "application/x-www-form-urlencoded",
         framing: str = "chunked", half_close: bool = False, timeout: float = 30) -> RawResponse:
    """POST ``body`` (already framed as ``framing`` says: ``chunked`` or
    ``length``) and read the answer.

    The body is sent from a second thread while this one reads, as a browser
    does: a server may answer (413, 400) before it has read everything, and
    then stops reading. ``half_close`` shuts the sending side after the body,
    as a client that hangs up mid-body does.
    """
    framing_header = (b"Transfer-Encoding: chunked" if framing == "chunked"
                      else b"Content-Length: %d" % len(body))
    head = b"\r\n".join([
        b"POST %s HTTP/1.1" % path.encode(),
        b"Host: 127.0.0.1:%d" % port,
        b"Content-Type: %s" % content_type.encode(),
        framing_header,
        b"Cookie: %s" % cookie.encode(),
        b"Connection: close",
        b"", b"",
    ])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:

        def send() -> None:
            try:
                sock.sendall(head + body)
                if half_close:
                    sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server answered and closed before taking it all

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        response = http.client.HTTPResponse(sock)
        response.begin()
        text = response.read().decode("utf-8", errors="replace")
        sender.join(timeout)
        return RawResponse(response.status, response.headers, text)
