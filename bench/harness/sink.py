"""An HTTP request-body sink: the yardstick for how fast curl can upload on this machine.

It reads each request's body into one reused buffer and throws it away (no hashing, no
disk, no allocation per read), then answers 200. An upload to it costs the client's side
of the transfer and little more, so its rate is what no server here can beat with the same
client; a server's upload rate as a share of it says how much the server itself adds.

Usage (from a script in bench/):

    from harness import sink
    with sink.Sink() as s:
        _, seconds = curl.post_file(s.url, path)

One child process (`python3 sink.py PORT`), stopped with the context. Stdlib only.
"""

import os
import socket
import subprocess
import sys

READ_BUFFER = 4 * 1024 * 1024


def serve(port: int) -> None:
    """Answer one connection at a time, forever: read the head, then Content-Length bytes."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    buffer = memoryview(bytearray(READ_BUFFER))
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    break
                head += data
            if b"\r\n\r\n" not in head:
                continue
            lines, rest = head.split(b"\r\n\r\n", 1)
            length = 0
            for line in lines.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            got = len(rest)
            while got < length:
                n = conn.recv_into(buffer)
                if n == 0:
                    break
                got += n
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")


class Sink:
    """The sink in a child process on a free loopback port."""

    def __init__(self, timeout: float = 10.0):
        # Imported here: the child runs this file as a script, where harness/http.py would
        # shadow the standard library's http that common needs.
        from . import common
        self.common = common
        self.port = common.free_port()
        self.url = f"http://127.0.0.1:{self.port}/upload"
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(self.port)])
        try:
            common.wait_ready(self.proc, "127.0.0.1", self.port, path="/", timeout=timeout)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        self.common.stop_process(self.proc)

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
