"""Fault injection for store tests: a loopback TCP proxy in front of the real S3 server (moto).

moto's ThreadedMotoServer.stop() lets connections already open finish their requests, so it
cannot stop an upload half-way; this proxy can: cut() closes every connection and refuses new
ones (to the client, the server is gone), restore() listens on the same port again. With
`cut_after` it cuts by itself once that many bytes have gone from client to server."""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    def __init__(self, target_port: int, cut_after: int | None = None):
        self.target_port, self.cut_after = target_port, cut_after
        self.forwarded = 0
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.listener: socket.socket | None = None
        self.restore()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def restore(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(64)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def cut(self) -> None:
        with self.lock:
            if self.listener is not None:
                self.listener.close()
                self.listener = None
            for conn in self.conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self.conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, upload: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
                if upload and self.cut_after is not None:
                    self.forwarded += len(data)
                    if self.forwarded >= self.cut_after:
                        self.cut_after = None
                        threading.Thread(target=self.cut, daemon=True).start()
                        return
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
