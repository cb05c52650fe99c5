"""The benchmarks' HTTP client: plain sockets, keep-alive, JSON (shared by rooms.py and sync.py)."""

import json
import socket
import time
import urllib.parse


class RequestFailed(RuntimeError):
    """A request answered with something other than 200: the exact request and answer."""


class Client:
    """One user's keep-alive HTTP/1.1 connection to 127.0.0.1 (TCP_NODELAY), JSON in and out,
    with the time the last byte of each answer arrived (`last_byte`, time.perf_counter()) and
    its size: decoding a large answer in Python must not be counted as the server's time.

    A plain socket rather than http.client, which spends about 70 us of CPU per request
    (its header parsing goes through the email package) against about 13 us here: on a
    machine with two cores the client's CPU is taken from the server it measures. Answers
    are read by Content-Length or chunked transfer coding; `Connection: close` reconnects.
    """

    def __init__(self, port: int, token: str | None = None):
        self.port = port
        self.fixed = (f"Host: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                      + (f"Authorization: Bearer {token}\r\n" if token else ""))
        self.last_byte = 0.0
        self.last_size = 0
        self._connect()

    def _connect(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        """The decoded JSON answer; RequestFailed (with request and answer) unless 200."""
        data = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\n{self.fixed}Content-Length: {len(data)}\r\n\r\n"
        self.sock.sendall(head.encode() + data)  # one write: no Nagle/delayed-ACK stall
        status_line = self.reader.readline()
        if not status_line:
            raise ConnectionError(f"{method} {path}: connection closed before an answer")
        status = int(status_line.split()[1])
        length, chunked, close = None, False, False
        while (line := self.reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                close = value == b"close"
        if chunked:
            parts = []
            while size := int(self.reader.readline().split(b";")[0], 16):
                parts.append(self.reader.read(size))
                self.reader.readline()  # the CRLF after each chunk
            while self.reader.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            raw = b"".join(parts)
        elif length is not None:
            raw = self.reader.read(length)
        else:  # neither: the body runs to the end of the connection
            raw, close = self.reader.read(), True
        self.last_byte = time.perf_counter()
        self.last_size = len(raw)
        if close:
            self.close()
            self._connect()
        if status != 200:
            raise RequestFailed(f"{method} {path} {data.decode()[:200]} -> "
                                f"HTTP {status} {raw[:400].decode(errors='replace')}")
        return json.loads(raw)

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def room_path(room_id: str, rest: str) -> str:
    return f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id, safe='')}/{rest}"
