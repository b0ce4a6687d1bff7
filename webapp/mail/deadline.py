"""The overall deadline of an SMTP dialogue: a watchdog per session, one alarm-clock thread for every watchdog."""
import socket
import threading
import time


class Watchdog:
    """The overall deadline: reads never wait longer than what is left, and when the time is up the connection is
    shut down so that no read, write or TLS handshake can outlive it (a trickling server could otherwise)."""

    def __init__(self):
        self.expired = False
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._end: float | None = None
        self._generation = 0

    def arm(self, seconds: float) -> None:
        with self._lock:
            self._generation += 1  # an alarm of an earlier arming finds a newer generation and does nothing
            self.expired = False
            self._end = time.monotonic() + seconds
            generation, end = self._generation, self._end
        _ALARMS.set(self, end, generation)

    def disarm(self) -> None:
        with self._lock:
            self._generation += 1
            self._end = None
        _ALARMS.cancel(self)

    def remaining(self) -> float:
        return float("inf") if self._end is None else self._end - time.monotonic()

    def io_timeout(self, timeout: float) -> float:
        """The timeout for the next socket operation: the read timeout, or less when the deadline is nearer."""
        left = self.remaining()
        if left <= 0:
            self.expired = True
            raise TimeoutError("the overall deadline has passed")
        return min(timeout, left)

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._fd = sock.fileno()

    def forget(self) -> None:
        """Called before the socket is closed, so that a late timer never touches a reused descriptor."""
        with self._lock:
            self._fd = None

    def _fire(self, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return
            self.expired = True
            if self._fd is None:
                return
            # A temporary object on the descriptor: whichever object (plain or TLS) owns it, the blocked call wakes.
            try:
                probe = socket.socket(fileno=self._fd)
            except OSError:
                return
            try:
                probe.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            finally:
                probe.detach()


class _AlarmClock:
    """One thread for every watchdog of the process: it sleeps until the earliest deadline set and fires the
    watchdogs whose time is up. (A timer thread per message cost the worker more than a whole SMTP dialogue.)"""

    def __init__(self):
        self._condition = threading.Condition()
        self._alarms: dict[Watchdog, tuple[float, int]] = {}  # watchdog -> (monotonic end, its generation)
        self._wake_at = float("inf")
        self._thread: threading.Thread | None = None

    def set(self, watchdog: Watchdog, end: float, generation: int) -> None:
        with self._condition:
            self._alarms[watchdog] = (end, generation)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="smtp-deadlines", daemon=True)
                self._thread.start()
            elif end < self._wake_at:
                self._condition.notify()

    def cancel(self, watchdog: Watchdog) -> None:
        # No need to wake the thread: at its planned time it finds nothing due and sleeps until the next end.
        with self._condition:
            self._alarms.pop(watchdog, None)

    def _run(self) -> None:
        while True:
            with self._condition:
                now = time.monotonic()
                due = [(watchdog, generation) for watchdog, (end, generation) in self._alarms.items() if end <= now]
                for watchdog, _ in due:
                    del self._alarms[watchdog]
                self._wake_at = min((end for end, _ in self._alarms.values()), default=float("inf"))
                if not due:
                    self._condition.wait(None if self._wake_at == float("inf") else self._wake_at - now)
            for watchdog, generation in due:  # outside the clock's lock: firing takes the watchdog's own
                watchdog._fire(generation)


_ALARMS = _AlarmClock()
