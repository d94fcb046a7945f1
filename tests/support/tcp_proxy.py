"""A TCP forwarder on 127.0.0.1 that can be cut and restored, to take an endpoint away from a
client without stopping the server behind it (the shared test stack serves every test).

`cut()` closes the listening socket and every open connection, so the client sees what it
would see if the server went away: refused connections and dropped WebSockets. `restore()`
listens again on the same port. With `block_websockets`, a connection whose first request asks
for a WebSocket upgrade gets `403` and is closed, as behind a proxy that does not pass them.
"""

from __future__ import annotations

import socket
import threading

__all__ = ["TcpProxy"]


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, block_websockets: bool = False):
        self.target = (target_host, target_port)
        self.block_websockets = block_websockets
        self.refused_upgrades = 0
        self.lock = threading.Lock()
        self.conns: set[socket.socket] = set()
        self.bytes_up = 0  # client -> server, as on the wire (HTTP and WebSocket framing included)
        self.bytes_down = 0
        self.accepted = 0
        self.listener: socket.socket | None = None
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.restore()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="proxy-accept", daemon=True).start()

    def cut(self) -> None:
        with self.lock:
            listener, self.listener = self.listener, None
            conns, self.conns = self.conns, set()
        if listener is not None:
            listener.close()
        for c in conns:
            _close(c)

    close = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            first = b""
            if self.block_websockets:
                try:
                    client.settimeout(5)
                    first = client.recv(65536)
                    client.settimeout(None)
                except OSError:
                    _close(client)
                    continue
                if b"upgrade: websocket" in first.lower():
                    self.refused_upgrades += 1
                    try:
                        client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    except OSError:
                        pass
                    _close(client)
                    continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                if first:
                    upstream.sendall(first)
                    self.bytes_up += len(first)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self.lock:
                if self.listener is not listener:
                    _close(client)
                    _close(upstream)
                    return
                self.conns.update((client, upstream))
                self.accepted += 1
            for a, b, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(a, b, up), name="proxy-pipe", daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                with self.lock:
                    if up:
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)
            with self.lock:
                self.conns.discard(src)
                self.conns.discard(dst)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()
