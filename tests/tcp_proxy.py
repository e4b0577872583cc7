"""A TCP proxy a test can cut and restore, to play a broker (or database) outage.

    proxy = TcpProxy("127.0.0.1", 5672).start()
    ... connect to 127.0.0.1:proxy.port ...
    proxy.cut()       # every connection closed, new ones refused (ECONNREFUSED)
    proxy.restore()   # accepting again on the same port
    proxy.freeze()    # a silent partition: connections stay open, nothing goes through
    proxy.thaw()      # what was held back goes through
    proxy.stop()
"""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    """Forwards connections on a loopback port to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._open: set[socket.socket] = set()
        self._accepting = threading.Event()
        self._flowing = threading.Event()
        self._flowing.set()

    def start(self) -> TcpProxy:
        self._listen()
        return self

    def cut(self) -> None:
        """Close every connection and the listening socket: new connections are refused."""
        self._accepting.clear()
        if self._acceptor is not None:
            self._acceptor.join(5)
            self._acceptor = None
        with self._lock:
            sockets, self._open = self._open, set()
        for sock in sockets:
            _close(sock)

    def restore(self) -> None:
        """Accept connections again, on the same port."""
        if not self._accepting.is_set():
            self._listen()

    def freeze(self) -> None:
        """A silent partition: no byte goes through either way, nothing is closed; new
        connections are accepted and get no answer (like a SYN to a black hole, nearly)."""
        self._flowing.clear()

    def thaw(self) -> None:
        """The partition heals: what was held back goes through."""
        self._flowing.set()

    def stop(self) -> None:
        self._flowing.set()
        self.cut()

    @property
    def connections(self) -> int:
        """Sockets open through the proxy (two per proxied connection)."""
        with self._lock:
            return len(self._open)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- plumbing -----------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        listener.settimeout(0.05)  # accept() cannot be interrupted by close(); poll instead
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accepting.set()
        self._acceptor = threading.Thread(target=self._accept_loop, args=(listener,),
                                          name=f"tcp-proxy-{self.port}", daemon=True)
        self._acceptor.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        try:
            while self._accepting.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                self._connect(client)
        finally:
            listener.close()

    def _connect(self, client: socket.socket) -> None:
        client.settimeout(None)
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _close(client)
            return
        upstream.settimeout(None)
        with self._lock:
            if not self._accepting.is_set():
                _close(client)
                _close(upstream)
                return
            self._open.update((client, upstream))
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while not self._flowing.wait(0.5):
                    if not self._accepting.is_set():  # cut while frozen
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(src)
                self._open.discard(dst)
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
