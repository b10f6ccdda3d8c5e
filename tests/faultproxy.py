"""A TCP forwarder between Kafka clients and the embedded broker that can go away: every
connection cut and the port closed, then listening again on the same port. For clients that
is the broker restarting with its data kept (what a real Kafka cluster does); the embedded Tansu
build stores only in memory, so restarting it would lose the records themselves. It can also
hang: the port accepts every connection and never answers (a server stuck, a network black hole).
It forwards any TCP service (the MLflow tracking server too)."""

from __future__ import annotations

import contextlib
import socket
import threading


class FaultProxy:
    def __init__(self, port: int, target: tuple[str, int]):
        self.port, self.target = port, target
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._held: list[socket.socket] = []  # accepted while hung: never read, never answered
        self.hung = False
        self._flowing = threading.Event()  # cleared by freeze(): bytes read are held, not passed on
        self._flowing.set()
        self._lock = threading.Lock()

    def start(self) -> FaultProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by stop()
                return
            if self.hung:
                with self._lock:
                    self._held.append(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source, sink)

    def _close(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            with self._lock:
                self._open.discard(sock)

    def hang(self) -> None:
        """The server stops answering: connections open now are cut, new ones accepted and never served."""
        self.hung = True
        with self._lock:
            cut = list(self._open)
        self._close(*cut)

    def freeze(self) -> None:
        """The server stops answering without closing anything: open connections stay open and
        their requests get no reply (nor do new connections'), until thaw() passes on what was held."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def unhang(self) -> None:
        self.hung = False
        with self._lock:
            held, self._held = self._held, []
        self._close(*held)

    def stop(self) -> None:
        """The broker goes away: the port closes and every connection is cut."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            cut = list(self._open)
        self._close(*cut)
