"""Celery end to end: a real worker process, tasks sent from this process, results back through
the rpc:// result backend (a reply queue per client, named in each task's reply_to).

The worker runs with Celery's defaults (mingle, gossip, heartbeats, the celery.pidbox and
celeryev exchanges, basic.qos from the prefetch multiplier) plus -E (task events) and a short
AMQP heartbeat.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import celery
import celery.exceptions

import support
from support import WAIT

import celeryapp
from celeryapp import app

HERE = os.path.dirname(os.path.abspath(__file__))
# Bound of one test; setUpClass/tearDownClass (worker start and stop) have their own.
TEST_TIMEOUT = 30
# How long a result may take.
RESULT_WAIT = 15
# The AMQP heartbeat the worker asks for, seconds.
WORKER_HEARTBEAT = 2


def _on_alarm(signum, frame):
    raise support.TestTimeout("did not finish in time (a broker reply never came?)")


class Worker:
    """One `python3 -m celery -A celeryapp worker` process with its log in a file."""

    def __init__(self, node, marks):
        self.node = node
        self.log_path = os.path.join(marks, node.split("@")[0] + ".log")
        env = dict(os.environ, WARREN_CELERY_MARKS=marks,
                   WARREN_CELERY_HEARTBEAT=str(WORKER_HEARTBEAT),
                   PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-B", "-m", "celery", "-A", "celeryapp", "worker",
             "--pool=solo", "--concurrency=1", "-l", "info", "-E", "-n", node,
             "-Q", "%s,%s" % (celeryapp.QUEUE, celeryapp.ROUTED_QUEUE)],
            cwd=HERE, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT)

    def wait_ready(self, timeout=30):
        """Waits until the worker answers a ping (broadcast on celery.pidbox, reply through
        reply.celery.pidbox)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("worker exited with %s before it was ready:\n%s"
                                     % (self.proc.returncode, self.log_tail()))
            replies = app.control.ping(destination=[self.node], timeout=0.5)
            if any(self.node in r for r in replies):
                return
        raise AssertionError("worker %s did not answer a ping within %ds:\n%s"
                             % (self.node, timeout, self.log_tail()))

    def shutdown(self, timeout=15):
        """Asks the worker to stop (the remote-control `shutdown` broadcast) and waits for it to
        exit; returns its exit code. Kills it (and raises) if it does not exit in time."""
        app.control.shutdown(destination=[self.node])
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("worker %s ignored the shutdown broadcast for %ds:\n%s"
                                 % (self.node, timeout, self.log_tail()))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._log.close()

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_tail(self, n=40):
        return "\n".join("worker| " + l for l in self.log().splitlines()[-n:])


def tearDownModule():
    # The result consumer's connection (rpc:// backend) and the producer pool of this process.
    consumer = getattr(app.backend, "result_consumer", None)
    if consumer is not None and getattr(consumer, "_connection", None) is not None:
        consumer.stop()
    app.pool.force_close_all()
    app.close()


class CeleryTestCase(unittest.TestCase):
    """Starts a worker for the class and stops it cleanly at the end (killing it if it will
    not stop). The worker's log is printed when the class ends."""

    worker = None

    @classmethod
    def setUpClass(cls):
        if not support.URL:
            raise AssertionError("WARREN_URL is not set (amqp://guest:guest@host:port/%2F)")
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(60)
        cls.marks = tempfile.mkdtemp(prefix="warren-celery-")
        try:
            cls.worker = cls.start_worker("a")
        except BaseException:
            cls.cleanup_class()
            raise
        finally:
            signal.alarm(0)

    @classmethod
    def start_worker(cls, tag):
        node = "warren-%s-%s-%d@localhost" % (cls.__name__.lower(), tag, os.getpid())
        w = Worker(node, cls.marks)
        try:
            w.wait_ready()
        except BaseException:
            w.kill()
            print(w.log_tail(), file=sys.stderr)
            raise
        return w

    @classmethod
    def tearDownClass(cls):
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(40)
        try:
            w = cls.worker
            if w is None:
                return
            code = w.shutdown()
            log = w.log()
            print("\n%s (exit code %s), last lines of its log:\n%s"
                  % (w.node, code, w.log_tail(15)), file=sys.stderr)
            if code != 0:
                raise AssertionError("worker %s exited with %s after the shutdown broadcast"
                                     % (w.node, code))
            # The short AMQP heartbeat kept the connection up all along.
            for bad in ("Connection to broker lost", "missed heartbeats", "Too many heartbeats"):
                if bad in log:
                    raise AssertionError("worker log says %r:\n%s" % (bad, w.log_tail()))
        finally:
            cls.cleanup_class()
            signal.alarm(0)

    @classmethod
    def cleanup_class(cls):
        if cls.worker is not None:
            cls.worker.kill()
        shutil.rmtree(cls.marks, ignore_errors=True)
        support.delete_all(queues=[celeryapp.QUEUE, celeryapp.ROUTED_QUEUE],
                           exchanges=[celeryapp.QUEUE, celeryapp.ROUTED_QUEUE])

    def setUp(self):
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(TEST_TIMEOUT)
        self.addCleanup(signal.alarm, 0)


class CeleryWorkerTest(CeleryTestCase):

    def test_delay_returns_result_through_rpc_backend(self):
        r = celeryapp.add.delay(2, 3)
        self.assertEqual(r.get(timeout=RESULT_WAIT), 5)
        self.assertEqual(r.state, "SUCCESS")
        self.assertTrue(r.successful())

    def test_apply_async_countdown_runs_after_the_delay(self):
        start = time.monotonic()
        r = celeryapp.add.apply_async((40, 2), countdown=1)
        self.assertEqual(r.get(timeout=RESULT_WAIT), 42)
        # An ETA task is held by the worker (raising its basic.qos prefetch) until it is due.
        self.assertGreaterEqual(time.monotonic() - start, 0.9)

    def test_eta_tasks_do_not_hold_back_other_tasks(self):
        # The worker's prefetch is concurrency x worker_prefetch_multiplier = 4. It keeps a
        # countdown task's message unacked until the task is due and raises its prefetch by one
        # for each (basic.qos on its consuming channel), so more ETA tasks than the prefetch do
        # not stop a task sent after them from running at once.
        start = time.monotonic()
        later = [celeryapp.add.apply_async((i, 100), countdown=4) for i in range(6)]
        self.assertEqual(celeryapp.add.delay(1, 2).get(timeout=RESULT_WAIT), 3)
        took = time.monotonic() - start
        self.assertLess(took, 3, "a task queued behind 6 countdown=4 tasks took %.1fs: the "
                        "worker could not take more messages than its initial prefetch" % took)
        self.assertEqual([r.get(timeout=RESULT_WAIT) for r in later], [i + 100 for i in range(6)])

    def test_revoked_countdown_task_does_not_run(self):
        # revoke() is a broadcast on celery.pidbox; the worker drops the task when it is due
        # and reports REVOKED through the result backend.
        r = celeryapp.add.apply_async((5, 5), countdown=1.5)
        r.revoke()
        with self.assertRaises(celery.exceptions.TaskRevokedError):
            r.get(timeout=RESULT_WAIT)
        self.assertEqual(r.state, "REVOKED")

    def test_task_is_retried_once_then_succeeds(self):
        r = celeryapp.flaky.delay("tok-1")
        self.assertEqual(r.get(timeout=RESULT_WAIT), {"token": "tok-1", "retries": 1})

    def test_exception_propagates_to_the_caller(self):
        r = celeryapp.fail.delay("boom")
        with self.assertRaises(ValueError) as cm:
            r.get(timeout=RESULT_WAIT)
        self.assertIn("boom", str(cm.exception))
        self.assertEqual(r.state, "FAILURE")

    def test_task_routes_sends_task_to_its_named_queue(self):
        r = celeryapp.where.delay()
        info = r.get(timeout=RESULT_WAIT)
        # task_routes put it on ROUTED_QUEUE, which Celery 5 publishes to through the default
        # exchange with the queue's name as routing key.
        self.assertEqual(info, {"routing_key": celeryapp.ROUTED_QUEUE, "exchange": ""})
        # And the default queue's tasks still come from the default queue.
        self.assertEqual(celeryapp.add.delay(1, 1).get(timeout=RESULT_WAIT), 2)

    def test_group_of_tasks(self):
        g = celery.group(celeryapp.add.s(i, i) for i in range(10))()
        self.assertEqual(g.get(timeout=RESULT_WAIT), [2 * i for i in range(10)])

    def test_inspect_active_queues(self):
        # A remote-control request with replies (pidbox), as `celery inspect active_queues`.
        replies = app.control.inspect(destination=[self.worker.node],
                                      timeout=WAIT).active_queues()
        self.assertIsNotNone(replies, "no reply to inspect active_queues")
        names = sorted(q["name"] for q in replies[self.worker.node])
        self.assertEqual(names, sorted([celeryapp.QUEUE, celeryapp.ROUTED_QUEUE]))

    def test_task_events_reach_an_event_receiver(self):
        # The worker runs with -E: task events go to the celeryev topic exchange; a receiver
        # declares its own transient queue (x-message-ttl, x-expires, auto-delete) bound to it.
        seen = []
        done = threading.Event()
        errors = []
        state = {"uuid": None}

        def on_event(event):
            if event.get("uuid") and event.get("uuid") == state["uuid"]:
                seen.append(event["type"])
                if event["type"] == "task-succeeded":
                    seen.append(event.get("result"))
                    done.set()
                    recv.should_stop = True

        with app.connection_for_read() as conn:
            recv = app.events.Receiver(conn, handlers={"*": on_event})

            def run():
                try:
                    recv.capture(limit=None, timeout=RESULT_WAIT, wakeup=False)
                except Exception as e:  # reported by the main thread
                    if not done.is_set():
                        errors.append(e)

            t = threading.Thread(target=run, daemon=True)
            t.start()
            try:
                support.wait_for(lambda: (support.queue_state(recv.queue.name) or (0, 0))[1] == 1,
                                 "the event receiver's queue and consumer")
                r = celeryapp.add.delay(20, 1)
                state["uuid"] = r.id
                self.assertEqual(r.get(timeout=RESULT_WAIT), 21)
                self.assertTrue(done.wait(RESULT_WAIT), "no task-succeeded event (errors: %r)"
                                % errors)
            finally:
                recv.should_stop = True
                t.join(5)
        self.assertEqual(seen, ["task-received", "task-started", "task-succeeded", "21"])


class CeleryAcksLateTest(CeleryTestCase):

    def test_acks_late_task_is_redelivered_after_the_worker_dies(self):
        token = "hold-%d" % os.getpid()
        r = celeryapp.hold.delay(token)
        mark = os.path.join(self.marks, token)
        support.wait_for(lambda: os.path.exists(mark), "the task to start", timeout=RESULT_WAIT)
        # acks_late: the running task's message is still unacknowledged, so killing the worker
        # (its connection drops) puts the message back in the queue.
        self.assertEqual(support.queue_state(celeryapp.QUEUE)[0], 0)
        w = type(self).worker
        w.kill()
        support.wait_for(lambda: support.queue_state(celeryapp.QUEUE) == (1, 0),
                         "the unacked task message to be requeued")
        type(self).worker = self.start_worker("b")
        self.assertEqual(r.get(timeout=RESULT_WAIT),
                         {"token": token, "redelivered": True, "acks_late": True})
        # Acked once it returned: nothing is left in the queue.
        support.wait_for(lambda: support.queue_state(celeryapp.QUEUE) == (0, 1),
                         "an empty queue with the new worker's consumer")
