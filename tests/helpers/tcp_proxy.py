"""A TCP proxy on 127.0.0.1 in front of a real server, for faults on the wire: it cuts
connections after some bytes (a reset, as a dropped link or a restarted load balancer gives),
slows uploads down, and tells when a request it forwarded contained some bytes."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

CHUNK = 64 << 10


class Proxy:
    """Forwards every connection to ``127.0.0.1:target_port``; listens on ``self.port``.

    ``cut_after``: a connection is reset once it carried that many bytes towards the server,
    for the first ``cuts`` such connections (``cuts=-1``: every one); ``self.cut`` counts them.
    ``rate``: bytes per second towards the server, each connection (None: as fast as it goes).
    ``watch``: ``self.seen`` is set once those bytes passed towards the server.
    ``self.hold``: while it is set, nothing more is carried towards the server (requests sent
    meanwhile wait, unanswered: a server that stopped answering).
    """

    def __init__(self, target_port: int, *, cut_after: int | None = None, cuts: int = 0,
                 rate: float | None = None, watch: bytes | None = None):
        self.target_port, self.cut_after, self.cuts_left, self.rate, self.watch = \
            target_port, cut_after, cuts, rate, watch
        self.cut = 0
        self.seen = threading.Event()
        self.hold = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._upstream, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _should_cut(self, carried: int) -> bool:
        if self.cut_after is None or carried < self.cut_after:
            return False
        with self._lock:
            if self.cuts_left == 0:
                return False
            self.cuts_left -= 1
            self.cut += 1
            return True

    def _upstream(self, client: socket.socket, server: socket.socket) -> None:
        carried, tail = 0, b""
        while True:
            try:
                data = client.recv(CHUNK)
            except OSError:
                data = b""
            if not data:
                _close(server)
                return
            while self.hold.is_set() and not self._closed:
                time.sleep(0.05)
            if self.watch and self.watch in tail + data:
                self.seen.set()
            tail = data[-len(self.watch):] if self.watch else b""
            carried += len(data)
            if self._should_cut(carried):
                _reset(client)
                _reset(server)
                return
            try:
                server.sendall(data)
            except OSError:
                _reset(client)
                return
            if self.rate:
                time.sleep(len(data) / self.rate)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(CHUNK)
                if not data:
                    break
                sink.sendall(data)
            except OSError:
                break
        _close(sink)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_WR)


def _reset(s: socket.socket) -> None:
    """Close with a TCP reset (linger 0), as a dropped connection looks to the other end."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        s.close()
