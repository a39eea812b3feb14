"""A raw HTTP/1.1 client for body-limit tests: sends a chunked body (no Content-Length) over a socket,
the one thing httpx cannot be made to do on demand."""

from __future__ import annotations

import json
import select
import socket
from urllib.parse import urlsplit


def raw_chunked(live_url: str, path: str, headers: dict, head: bytes, filler: bytes, total: int):
    """POST ``head`` then ``filler`` repeatedly (Transfer-Encoding: chunked, no Content-Length) until
    the server answers or ``total`` bytes went out. Returns (bytes sent, status, JSON answer)."""
    u = urlsplit(live_url)
    sent, answer = 0, b""
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection((u.hostname, u.port), timeout=30) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{lines}Transfer-Encoding: chunked\r\n\r\n".encode()
                  + b"%x\r\n%s\r\n" % (len(head), head))
        try:
            while sent < total:
                if select.select([s], [], [], 0)[0]:
                    break  # the server has answered
                s.sendall(b"%x\r\n%s\r\n" % (len(filler), filler))
                sent += len(filler)
            else:
                s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while True:
                if b"\r\n\r\n" in answer:
                    top, _, rest = answer.partition(b"\r\n\r\n")
                    length = next((int(line.split(b":", 1)[1]) for line in top.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), 0)
                    if len(rest) >= length:
                        break
                part = s.recv(65536)
                if not part:
                    break
                answer += part
        except ConnectionResetError:
            pass
    top, _, rest = answer.partition(b"\r\n\r\n")
    status = int(top.split(b" ", 2)[1]) if top.startswith(b"HTTP/1.1 ") else None
    return sent, status, (json.loads(rest) if rest.strip().startswith(b"{") else rest)
