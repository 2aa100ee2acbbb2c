"""Network plumbing of the alert sinks: an overall deadline per delivery, and POSTs that never redirect.

A socket timeout bounds each read, not a delivery: a server that sends one byte every few seconds
holds ``urllib`` or ``smtplib`` for as long as it likes. ``deadline`` shuts the delivery's sockets
down when its time is up, which ends any blocked read or write at once (the call then fails with a
``TimeoutError``). ``no_redirect_opener`` refuses every 3xx: ``urllib`` would follow 301/302/303
for a POST with a body-less GET, to any host, and the alert would be "delivered" to nowhere.
"""

from __future__ import annotations

import http.client
import smtplib
import socket
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")
_POLL_S = 0.05  # after the deadline, sockets opened late (a connect in flight) are shut this often


class SocketWatch:
    """The sockets of one delivery, and objects holding their current socket as ``.sock``."""

    def __init__(self) -> None:
        self._items: list[object] = []

    def add(self, item: T) -> T:
        self._items.append(item)
        return item

    def shut_down(self) -> None:
        for item in list(self._items):
            sock = item if isinstance(item, socket.socket) else getattr(item, "sock", None)
            if isinstance(sock, socket.socket):
                # The plain socket's shutdown also for TLS sockets: it acts on the connection itself.
                with suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


@contextmanager
def deadline(seconds: float, watch: SocketWatch) -> Iterator[None]:
    """Cut the watched sockets after ``seconds``; a call that fails because of it raises TimeoutError."""
    done, fired = threading.Event(), threading.Event()

    def guard() -> None:
        if done.wait(seconds):
            return
        fired.set()
        while not done.is_set():
            watch.shut_down()
            done.wait(_POLL_S)

    thread = threading.Thread(target=guard, name="alert-delivery-deadline", daemon=True)
    thread.start()
    try:
        yield
    except (OSError, ValueError, http.client.HTTPException, smtplib.SMTPException):
        if fired.is_set():
            raise TimeoutError(
                f"no complete answer before the delivery deadline (cut after {seconds:.2g} s)"
            ) from None
        raise
    finally:
        done.set()
        thread.join()


class _WatchedTLSContext(ssl.SSLContext):
    """A client TLS context that registers each TLS socket before its handshake (which may drip)."""

    watch: SocketWatch

    def wrap_socket(  # type: ignore[override]
        self, sock: socket.socket, *, do_handshake_on_connect: bool = True, **kwargs: Any
    ) -> ssl.SSLSocket:
        wrapped = self.watch.add(super().wrap_socket(sock, do_handshake_on_connect=False, **kwargs))
        if do_handshake_on_connect:
            wrapped.do_handshake()
        return wrapped


def tls_context(watch: SocketWatch) -> ssl.SSLContext:
    """``ssl.create_default_context()`` (verified, hostname checked) whose sockets ``watch`` can cut."""
    context = _WatchedTLSContext(ssl.PROTOCOL_TLS_CLIENT)
    context.watch = watch
    context.load_default_certs()
    return context


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, watch: SocketWatch, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watch = watch
        watch.add(self)  # its current socket, during a proxy tunnel too

    def connect(self) -> None:
        super().connect()
        self._watch.add(self.sock)  # urllib drops ``self.sock`` before the body is read


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, watch: SocketWatch, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watch = watch
        watch.add(self)

    def connect(self) -> None:
        super().connect()
        self._watch.add(self.sock)


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watch: SocketWatch) -> None:
        super().__init__()
        self._watch = watch

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(partial(_HTTPConnection, watch=self._watch), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watch: SocketWatch) -> None:
        self._tls = tls_context(watch)
        super().__init__(context=self._tls)
        self._watch = watch

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = partial(_HTTPSConnection, watch=self._watch)
        return self.do_open(connection, req, context=self._tls)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Every 3xx stays an ``HTTPError`` (the default error handler raises it)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def no_redirect_opener(watch: SocketWatch) -> urllib.request.OpenerDirector:
    """An opener (proxies from the environment as usual) whose connections ``watch`` can cut."""
    return urllib.request.build_opener(_HTTPHandler(watch), _HTTPSHandler(watch), _NoRedirect())
