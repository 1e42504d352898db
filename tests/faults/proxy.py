"""A fault-injecting TCP proxy between the server's engine and PostgreSQL, for the tests only.

One thread, one selector, loopback only. It forwards bytes both ways until a fault is set:

- :meth:`FaultProxy.latency`: every chunk, both ways, is held back for a while;
- :meth:`FaultProxy.reset_on`: when a connection's client has sent the given byte patterns in
  order (``b"DELETE FROM usage_daily"``, then ``b"COMMIT"``), the chunk holding the last
  one is dropped and both sockets are reset, as when the network or the server dies mid-way;
- :meth:`FaultProxy.cut_after`: the same trigger, but the chunk is delivered first: the server
  gets (say) the COMMIT and commits, and its answer is lost;
- :meth:`FaultProxy.stall_on`: the same trigger, but the connection then goes silent: bytes
  are read and dropped both ways, nothing is ever answered, the client's socket stays open
  (it never learns that the server hung up);
- :meth:`FaultProxy.down`: every open connection is reset and every new one is reset as soon
  as it is accepted, as when the database is down;
- :meth:`FaultProxy.healthy`: forward again (silent connections are closed).

Every loop is bounded: the selector wakes at least every 50 ms, and the proxy stops by itself
after ``max_lifetime_s`` even if nobody calls :meth:`FaultProxy.stop`.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType

LOOPBACK = "127.0.0.1"
CHUNK = 65536
TICK_S = 0.05


@dataclass(frozen=True)
class Fault:
    """What the proxy does to traffic; ``kind`` is healthy, latency, reset, cut, stall or down."""

    kind: str = "healthy"
    delay_s: float = 0.0
    trigger: tuple[bytes, ...] = ()
    times: int | None = None  # how many connections a trigger may hit; None: every one


@dataclass(eq=False)
class _Pair:
    """One proxied connection: the client's socket, the server's, and what is queued."""

    client: socket.socket
    server: socket.socket
    to_server: deque[tuple[float, bytes]] = field(default_factory=deque)
    to_client: deque[tuple[float, bytes]] = field(default_factory=deque)
    armed_for: Fault | None = None  # the fault whose trigger ``matched`` counts towards
    matched: int = 0  # how many trigger patterns the client has sent so far
    seen: bytes = b""  # the client's latest bytes, so a pattern split across chunks matches
    silent: bool = False

    def peer(self, sock: socket.socket) -> socket.socket:
        """The other end of ``sock``."""
        return self.server if sock is self.client else self.client

    def queue_to(self, sock: socket.socket) -> deque[tuple[float, bytes]]:
        """The bytes waiting to be written to ``sock``."""
        return self.to_server if sock is self.server else self.to_client


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashed peer or a dropped route would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream_port``, with a fault that can change any time."""

    def __init__(
        self, upstream_port: int, *, upstream_host: str = LOOPBACK, max_lifetime_s: float = 240.0
    ) -> None:
        if upstream_host != LOOPBACK:
            raise ValueError("the fault proxy only forwards to the loopback address")
        self._upstream = (upstream_host, upstream_port)
        self._max_lifetime_s = max_lifetime_s
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._applied_cond = threading.Condition(self._lock)
        self._generation = 0  # fault changes asked for
        self._applied = 0  # fault changes the loop has applied
        self._fault = Fault()
        self._kill_all = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fault-proxy", daemon=True)
        self._pairs: dict[socket.socket, _Pair] = {}
        #: How many connections a reset or stall has hit, and how many were accepted.
        self.fired = 0
        self.accepted = 0
        self._fired_now = 0  # hits of the current fault

    # -- control (any thread) -----------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Start forwarding in the background."""
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """Whether the proxy's thread still forwards (it stops by itself after its lifetime)."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Close every connection and the listener, and wait for the thread (bounded)."""
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _set(self, fault: Fault, *, kill_all: bool = False) -> None:
        """Change the fault and wait (bounded) until the loop applies it, so that whatever the
        caller does next already meets the new fault."""
        with self._lock:
            self._fault = fault
            self._fired_now = 0
            self._kill_all = self._kill_all or kill_all
            self._generation += 1
            wanted = self._generation
            self._applied_cond.wait_for(
                lambda: self._applied >= wanted or not self._thread.is_alive(), timeout=5
            )

    def healthy(self) -> None:
        """Forward everything again; connections left silent by a stall are closed."""
        self._set(Fault())

    def latency(self, delay_s: float) -> None:
        """Hold every chunk back ``delay_s`` seconds, both ways."""
        self._set(Fault("latency", delay_s=delay_s))

    def reset_on(self, *patterns: bytes, times: int | None = None) -> None:
        """Reset a connection once its client has sent ``patterns`` in order.

        Every connection that does so is hit, or only the first ``times`` of them.
        """
        self._set(Fault("reset", trigger=patterns, times=times))

    def cut_after(self, *patterns: bytes, times: int | None = None) -> None:
        """Like :meth:`reset_on`, but deliver the triggering chunk to the server first."""
        self._set(Fault("cut", trigger=patterns, times=times))

    def stall_on(self, *patterns: bytes, times: int | None = None) -> None:
        """Go silent on a connection once its client has sent ``patterns`` in order."""
        self._set(Fault("stall", trigger=patterns, times=times))

    def down(self) -> None:
        """Reset every open connection and every new one, as if the database were down."""
        self._set(Fault("down"), kill_all=True)

    # -- the loop (the proxy's thread only) -------------------------------------------------

    def _loop(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ)
        deadline = time.monotonic() + self._max_lifetime_s
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    fault, kill_all, self._kill_all = self._fault, self._kill_all, False
                    generation = self._generation
                if kill_all:
                    for pair in set(self._pairs.values()):
                        self._close(selector, pair, reset=True)
                if fault.kind != "stall":
                    for pair in {p for p in self._pairs.values() if p.silent}:
                        self._close(selector, pair, reset=False)
                with self._lock:
                    self._applied = generation
                    self._applied_cond.notify_all()
                for key, _ in selector.select(timeout=TICK_S):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self._listener:
                        self._accept(selector, fault)
                    elif sock in self._pairs:
                        self._read(selector, self._pairs[sock], sock, fault)
                self._flush(selector)
        finally:
            for pair in set(self._pairs.values()):
                self._close(selector, pair, reset=True)
            selector.close()
            self._listener.close()
            with self._lock:
                self._applied_cond.notify_all()

    def _accept(self, selector: selectors.BaseSelector, fault: Fault) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        self.accepted += 1
        if fault.kind == "down":
            _reset(client)
            return
        try:
            server = socket.create_connection(self._upstream, timeout=5)
        except OSError:
            _reset(client)
            return
        for sock in (client, server):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = _Pair(client, server)
        self._pairs[client] = self._pairs[server] = pair
        selector.register(client, selectors.EVENT_READ)
        selector.register(server, selectors.EVENT_READ)

    def _read(
        self, selector: selectors.BaseSelector, pair: _Pair, sock: socket.socket, fault: Fault
    ) -> None:
        try:
            data = sock.recv(CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            if pair.silent and sock is pair.server:
                # A black hole: the client never learns that the server hung up.
                self._pairs.pop(sock, None)
                selector.unregister(sock)
                sock.close()
                return
            self._close(selector, pair, reset=False)
            return
        if pair.silent:
            return  # a stalled connection swallows everything
        armed = fault.trigger and (fault.times is None or self._fired_now < fault.times)
        if sock is pair.client and armed and self._triggered(pair, data, fault):
            with self._lock:
                self.fired += 1
                if self._fault is fault:
                    self._fired_now += 1
            if fault.kind == "reset":
                self._close(selector, pair, reset=True)
                return
            if fault.kind == "cut":
                pair.server.setblocking(True)
                pair.server.settimeout(5)
                try:
                    for _, queued in pair.to_server:
                        pair.server.sendall(queued)
                    pair.server.sendall(data)
                except OSError:
                    pass
                self._pairs.pop(pair.server, None)
                selector.unregister(pair.server)
                pair.server.close()  # a FIN after the data: the server reads all of it
                self._close(selector, pair, reset=True)
                return
            if fault.kind == "stall":
                pair.silent = True
                pair.to_server.clear()
                pair.to_client.clear()
                return
        queue = pair.queue_to(pair.peer(sock))
        due = time.monotonic() + (fault.delay_s if fault.kind == "latency" else 0.0)
        if queue:
            due = max(due, queue[-1][0])  # never reorder bytes
        queue.append((due, data))

    @staticmethod
    def _triggered(pair: _Pair, data: bytes, fault: Fault) -> bool:
        trigger = fault.trigger
        if pair.armed_for is not fault:  # a new fault counts from zero
            pair.armed_for, pair.matched, pair.seen = fault, 0, b""
        window = pair.seen + data
        while pair.matched < len(trigger):
            found = window.find(trigger[pair.matched])
            if found < 0:
                break
            window = window[found + len(trigger[pair.matched]) :]
            pair.matched += 1
        longest = max(len(p) for p in trigger)
        pair.seen = window[-longest:]
        return pair.matched >= len(trigger)

    def _flush(self, selector: selectors.BaseSelector) -> None:
        now = time.monotonic()
        for pair in set(self._pairs.values()):
            for sock in (pair.server, pair.client):
                queue = pair.queue_to(sock)
                while queue and queue[0][0] <= now:
                    due, data = queue[0]
                    try:
                        sent = sock.send(data)
                    except BlockingIOError:
                        break
                    except OSError:
                        self._close(selector, pair, reset=True)
                        return
                    if sent < len(data):
                        queue[0] = (due, data[sent:])
                        break
                    queue.popleft()

    def _close(self, selector: selectors.BaseSelector, pair: _Pair, *, reset: bool) -> None:
        for sock in (pair.client, pair.server):
            if self._pairs.pop(sock, None) is None:
                continue
            with contextlib.suppress(KeyError, ValueError):
                selector.unregister(sock)
            if reset:
                _reset(sock)
            else:
                sock.close()
