"""Shared helpers for the pika conformance suite.

The broker under test comes from WARREN_URL (amqp://guest:guest@host:port/ with vhost "/").
Every wait is bounded; every resource a test declares is named after the test and the process
id and is deleted when the test ends.
"""

import itertools
import os
import signal
import time
import unittest
import urllib.parse

import pika
import pika.exceptions

URL = os.environ.get("WARREN_URL", "")

_seq = itertools.count(1)

# Upper bound of every wait for something that should happen.
WAIT = 3.0
# How long we watch for something that should NOT happen.
QUIET = 0.3
# Hard limit of one test (and of its cleanup): pika's BlockingConnection waits for a reply to a
# synchronous method without any timeout, so a broker that never answers would hang the suite.
TEST_TIMEOUT = 10


class TestTimeout(AssertionError):
    pass


def _on_alarm(signum, frame):
    raise TestTimeout("test did not finish within %ds (a broker reply never came?)" % TEST_TIMEOUT)


def params(url=None, **overrides):
    """Connection parameters for url (default WARREN_URL) with short, bounded timeouts."""
    p = pika.URLParameters(url or URL)
    p.connection_attempts = 1
    p.retry_delay = 0
    p.socket_timeout = 5
    p.stack_timeout = 10
    p.blocked_connection_timeout = 10
    for k, v in overrides.items():
        setattr(p, k, v)
    return p


def url_with(user=None, password=None, vhost=None):
    """WARREN_URL with the user, password or vhost replaced."""
    u = urllib.parse.urlsplit(URL)
    host = u.hostname + (":%d" % u.port if u.port else "")
    user = u.username if user is None else user
    password = u.password if password is None else password
    path = u.path if vhost is None else "/" + urllib.parse.quote(vhost, safe="")
    netloc = "%s:%s@%s" % (urllib.parse.quote(user, safe=""),
                           urllib.parse.quote(password, safe=""), host)
    return urllib.parse.urlunsplit((u.scheme, netloc, path, u.query, ""))


def connect(url=None, **overrides):
    return pika.BlockingConnection(params(url, **overrides))


class BrokerTestCase(unittest.TestCase):
    """One connection and one channel per test, plus cleanup of declared resources."""

    def setUp(self):
        if not URL:
            self.fail("WARREN_URL is not set (amqp://guest:guest@host:port/)")
        self._queues = []
        self._exchanges = []
        self._conns = []
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(TEST_TIMEOUT)
        self.addCleanup(signal.alarm, 0)  # runs last
        self.addCleanup(self._cleanup)
        self.conn = self.connect()
        self.ch = self.conn.channel()

    # --- resources -------------------------------------------------------------------------

    def name(self, suffix=""):
        """A resource name unique to this test and process."""
        n = "pika.%s.%d.%d" % (self._testMethodName, os.getpid(), next(_seq))
        return n + ("." + suffix if suffix else "")

    def connect(self, url=None, **overrides):
        c = connect(url, **overrides)
        self._conns.append(c)
        return c

    def declare_queue(self, name=None, ch=None, **kw):
        """Declares a queue (named after the test unless name is given) and deletes it at the end."""
        ch = ch or self.ch
        q = self.name("q") if name is None else name
        ok = ch.queue_declare(q, **kw)
        self._queues.append(ok.method.queue)
        return ok.method.queue

    def declare_exchange(self, exchange_type, ch=None, name=None, **kw):
        ch = ch or self.ch
        e = name or self.name(exchange_type)
        ch.exchange_declare(e, exchange_type=exchange_type, **kw)
        self._exchanges.append(e)
        return e

    def track_queue(self, q):
        self._queues.append(q)

    def track_exchange(self, e):
        self._exchanges.append(e)

    def _cleanup(self):
        signal.alarm(TEST_TIMEOUT)
        try:
            if self._queues or self._exchanges:
                c = connect()
                try:
                    for q in self._queues:
                        ch = c.channel()
                        try:
                            ch.queue_delete(q)
                            ch.close()
                        except pika.exceptions.AMQPChannelError:
                            pass
                    for e in self._exchanges:
                        ch = c.channel()
                        try:
                            ch.exchange_delete(e)
                            ch.close()
                        except pika.exceptions.AMQPChannelError:
                            pass
                finally:
                    c.close()
        finally:
            for c in self._conns:
                if c.is_open:
                    try:
                        c.close()
                    except Exception:
                        pass

    # --- messages --------------------------------------------------------------------------

    def confirmed_channel(self):
        """A second channel in confirm mode: a publish returns once the broker has routed it,
        so a following basic.get or passive declare sees the message (or its absence)."""
        ch = self.conn.channel()
        ch.confirm_delivery()
        return ch

    def get_all(self, q, ch=None, limit=100):
        """basic.get (auto-ack) until get-empty; returns the bodies in order."""
        ch = ch or self.ch
        out = []
        for _ in range(limit):
            m, _p, body = ch.basic_get(q, auto_ack=True)
            if m is None:
                return out
            out.append(body)
        self.fail("queue %s did not run empty after %d gets" % (q, limit))

    def message_count(self, q, ch=None):
        return (ch or self.ch).queue_declare(q, passive=True).method.message_count

    def wait_count(self, q, n, ch=None):
        """Waits (bounded) until q holds n ready messages, e.g. after a close requeued them."""
        ch = ch or self.ch
        deadline = time.monotonic() + WAIT
        while True:
            got = self.message_count(q, ch=ch)
            if got == n:
                return
            if time.monotonic() > deadline:
                self.fail("queue %s holds %d ready messages, want %d" % (q, got, n))
            time.sleep(0.01)

    def wait_until(self, cond, conn=None, timeout=WAIT, what="condition"):
        """Pumps I/O on conn until cond() is true; fails after timeout seconds."""
        conn = conn or self.conn
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                self.fail("timed out after %.1fs waiting for %s" % (timeout, what))
            conn.process_data_events(time_limit=0.05)

    def pump(self, seconds=QUIET, conn=None):
        """Pumps I/O on conn for a fixed, short time (to show that nothing more arrives)."""
        conn = conn or self.conn
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.05)

    def publish_and_sync(self, ch, *args, **kw):
        """basic_publish, then a synchronous call on the same channel. A bare basic_publish
        returns once its frames are written, so whether the broker's channel.close is seen
        during it is a matter of timing; the close always comes before the qos-ok, so an error
        the publish causes is raised here on every broker and every machine."""
        ch.basic_publish(*args, **kw)
        ch.basic_qos(prefetch_count=0)

    def assertChannelClosed(self, code, fn, *args, **kw):
        """fn(*args) must make the broker close the channel with code."""
        with self.assertRaises(pika.exceptions.ChannelClosedByBroker) as cm:
            fn(*args, **kw)
        self.assertEqual(cm.exception.reply_code, code, cm.exception.reply_text)
        return cm.exception
