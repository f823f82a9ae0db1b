"""Shared helpers for the kombu and Celery conformance tests.

The broker under test comes from WARREN_URL (amqp://guest:guest@host:port/%2F, the vhost "/"
spelled out as conformance/pika_test.go's pikaURL does). Every wait is bounded, and every queue
or exchange a test creates has a name unique to the test and the process and is deleted when the
test ends. Shared, broker-wide names that Celery always uses (celery.pidbox, reply.celery.pidbox,
celeryev) are left alone: a real deployment has them too, and another Celery user of the same
broker may be relying on them.
"""

import itertools
import os
import signal
import time
import unittest

import amqp.exceptions
import kombu

URL = os.environ.get("WARREN_URL", "")

_seq = itertools.count(1)

# Upper bound of every wait for something that should happen.
WAIT = 5.0
# How long we watch for something that should NOT happen.
QUIET = 0.3


class TestTimeout(AssertionError):
    pass


def _on_alarm(signum, frame):
    raise TestTimeout("test did not finish in time (a broker reply never came?)")


def connection(url=None, **kw):
    """A kombu.Connection to the broker under test with short, bounded timeouts."""
    kw.setdefault("connect_timeout", 5)
    kw.setdefault("transport_options", {})
    kw["transport_options"].setdefault("max_retries", 1)
    return kombu.Connection(url or URL, **kw)


def unique(prefix, suffix=""):
    """A resource name unique to prefix (usually the test name) and this process."""
    n = "celery.conf.%s.%d.%d" % (prefix, os.getpid(), next(_seq))
    return n + ("." + suffix if suffix else "")


def queue_state(name, url=None):
    """(message_count, consumer_count) of an existing queue, or None when it does not exist.

    Uses a passive queue.declare on a connection of its own: a 404 closes the channel."""
    with connection(url) as c:
        ch = c.channel()
        try:
            ok = ch.queue_declare(queue=name, passive=True)
        except amqp.exceptions.NotFound:
            return None
        finally:
            try:
                ch.close()
            except Exception:
                pass
        return ok.message_count, ok.consumer_count


def wait_for(cond, what, timeout=WAIT, interval=0.05):
    """Polls cond() until it returns a true value, which it returns; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def delete_all(queues=(), exchanges=()):
    """Deletes the queues and exchanges; missing ones are fine."""
    if not queues and not exchanges:
        return
    with connection() as c:
        for q in queues:
            ch = c.channel()
            try:
                ch.queue_delete(queue=q)
                ch.close()
            except amqp.exceptions.AMQPError:
                pass
        for e in exchanges:
            ch = c.channel()
            try:
                ch.exchange_delete(exchange=e)
                ch.close()
            except amqp.exceptions.AMQPError:
                pass


class BrokerTestCase(unittest.TestCase):
    """A time limit per test plus cleanup of the queues and exchanges it names."""

    TEST_TIMEOUT = 20

    def setUp(self):
        if not URL:
            self.fail("WARREN_URL is not set (amqp://guest:guest@host:port/%2F)")
        self._queues = []
        self._exchanges = []
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(self.TEST_TIMEOUT)
        self.addCleanup(signal.alarm, 0)  # runs last
        self.addCleanup(lambda: delete_all(self._queues, self._exchanges))

    def name(self, suffix=""):
        """A queue or exchange name for this test, deleted (as both) when the test ends."""
        n = unique(self._testMethodName, suffix)
        self._queues.append(n)
        self._exchanges.append(n)
        return n

    def conn(self, **kw):
        c = connection(**kw)
        self.addCleanup(c.release)
        c.connect()
        return c

    def drain(self, conn, until, what, timeout=WAIT):
        """conn.drain_events() until until() is true; fails after timeout seconds."""
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail("timed out after %.1fs waiting for %s" % (timeout, what))
            try:
                conn.drain_events(timeout=min(left, 0.2))
            except TimeoutError:
                pass

    def pump(self, conn, seconds=QUIET):
        """conn.drain_events() for a fixed, short time (to show that nothing more arrives)."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                conn.drain_events(timeout=min(left, 0.05))
            except TimeoutError:
                pass
