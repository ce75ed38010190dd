"""The connection side of the server: uvicorn's h11 protocol with the limits it lacks.

uvicorn bounds the size of a request head only while it is incomplete (h11's
``max_incomplete_event_size``, here ``max_header_size``), has no time limit on a request head, and
no bound on open connections (``limit_concurrency`` answers 503 to complete requests only, in plain
text, and leaves slow connections open). ``limited_protocol`` adds them:

- a head (request line and headers) must be complete within ``header_timeout`` seconds of the
  connection opening or of the previous response on a kept-alive connection, else the connection
  is answered 408 and closed; a kept-alive connection that dribbles a head never resets the timer;
- beyond ``max_connections`` open connections a new one is answered 503 and closed at once;
- what uvicorn answers itself (a malformed request, a head over the size limit) is an OpenAI error
  body too, 431 for the head that is too large.

A head that is complete but larger than ``max_header_size`` (it arrived in one read) is refused by
the application (app.py, 431). The body's limits (size, time) are the application's too: it reads
the body as it streams in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


@dataclass(frozen=True)
class ConnectionLimits:
    """max_connections: open connections; header_timeout: seconds for a request head;
    max_header_size: bytes of a request head."""

    max_connections: int = 256
    header_timeout: float = 10.0
    max_header_size: int = 16 << 10


def _error_body(message: str, code: str, type_: str = "invalid_request_error") -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()


def error_bytes(status: int, reason: str, message: str, code: str, type_: str = "invalid_request_error") -> bytes:
    """A whole HTTP/1.1 response with OpenAI's error body that closes the connection."""
    body = _error_body(message, code, type_)
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n")
    return head.encode() + body


def _head_size(scope) -> int:
    """Bytes of a request head as it came (request line and header lines, near enough)."""
    line = len(scope["method"]) + len(scope["raw_path"]) + len(scope["query_string"]) + 12
    return line + sum(len(k) + len(v) + 4 for k, v in scope["headers"])


def limited_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """uvicorn's h11 protocol with `limits` (give it as uvicorn.Config(http=...), together with
    h11_max_incomplete_event_size=limits.max_header_size)."""

    class LimitedH11Protocol(H11Protocol):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._inner_app = self.app
            self.app = self._check_head

        async def _check_head(self, scope, receive, send) -> None:
            """The application, behind the size limit of a head that arrived complete."""
            if scope["type"] == "http" and _head_size(scope) > limits.max_header_size:
                body = _error_body(f"the request head is larger than {limits.max_header_size} bytes "
                                   "(--max-header-size)", "headers_too_large")
                await send({"type": "http.response.start", "status": 431,
                            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": body})
                return
            await self._inner_app(scope, receive, send)

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._head_timer = None
            self._head_cycle = None
            if len(self.connections) > limits.max_connections:
                self.logger.warning("refused a connection: %d are open (--max-connections)", len(self.connections) - 1)
                self._refuse(error_bytes(503, "Service Unavailable", f"the server has {limits.max_connections} "
                                         "connections open, the most it keeps (--max-connections); retry later",
                                         "too_many_connections", "server_error"))
                return
            self._wait_for_head()

        def _wait_for_head(self) -> None:
            """Arms the head timer for the request after the current cycle (None: the first)."""
            self._stop_head_timer()
            self._head_cycle = self.cycle
            self._head_timer = self.loop.call_later(limits.header_timeout, self._head_expired)

        def _stop_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_expired(self) -> None:
            self._head_timer = None
            if self.transport.is_closing() or self.cycle is not self._head_cycle:
                return
            if self.conn.our_state is h11.IDLE and self.conn.their_state is h11.IDLE:
                self.logger.info("closed a connection whose request head took over %g s (--header-timeout)",
                                 limits.header_timeout)
                self._refuse(error_bytes(408, "Request Timeout", f"the request head did not arrive within "
                                         f"{limits.header_timeout:g} s (--header-timeout)", "request_timeout"))
            else:  # after an answer, the rest of a body the application did not read is still coming
                self.transport.close()

        def _refuse(self, response: bytes) -> None:
            self._stop_head_timer()
            self.transport.write(response)
            self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self.transport.is_closing():
                return
            super().data_received(data)
            if self._head_timer is not None and self.cycle is not self._head_cycle:
                self._stop_head_timer()  # a new request's head is complete: the application has it

        def on_response_complete(self) -> None:
            before = self.cycle
            super().on_response_complete()
            if not self.transport.is_closing() and self.cycle is before:  # no pipelined request started
                self._wait_for_head()

        def connection_lost(self, exc) -> None:
            self._stop_head_timer()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            # h11 refuses a head longer than its limit with "Receive buffer too long" while it is still
            # incomplete; any other error here is a malformed request.
            if len(self.conn.trailing_data[0]) > limits.max_header_size:
                response = error_bytes(431, "Request Header Fields Too Large", f"the request head is larger than "
                                       f"{limits.max_header_size} bytes (--max-header-size)", "headers_too_large")
            else:
                response = error_bytes(400, "Bad Request", f"{msg} (not HTTP/1.1)", "invalid_http")
            self._refuse(response)

    return LimitedH11Protocol
