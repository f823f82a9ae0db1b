"""The tiny Celery application of the end-to-end tests.

The test process imports it (to send tasks and read results) and starts a worker on it with
`python3 -m celery -A celeryapp worker`. Both read the same environment: WARREN_URL (the broker)
and the queue names, which the first importer (the test process) makes unique and the worker
inherits.
"""

import os
import time

from celery import Celery

QUEUE = os.environ.setdefault("WARREN_CELERY_QUEUE", "celery.conf.tasks.%d" % os.getpid())
ROUTED_QUEUE = os.environ.setdefault("WARREN_CELERY_ROUTED_QUEUE",
                                     "celery.conf.routed.%d" % os.getpid())
# Folder where hold() leaves a mark when it starts running (set by the test for the worker).
MARKS = os.environ.get("WARREN_CELERY_MARKS", "")

app = Celery("celeryapp", broker=os.environ.get("WARREN_URL", ""), backend="rpc://")
app.conf.update(
    # Unique queue names instead of the shared default "celery": a long-running RabbitMQ may
    # serve other Celery users. Everything else stays at Celery's defaults.
    task_default_queue=QUEUE,
    task_routes={"celeryapp.where": {"queue": ROUTED_QUEUE}},
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_timeout=5,
    # The worker asks for a short AMQP heartbeat (the test process keeps Celery's default:
    # it does not run a heartbeat loop), so a few heartbeat intervals pass during the tests.
    broker_heartbeat=int(os.environ.get("WARREN_CELERY_HEARTBEAT", "120")),
)


@app.task
def add(x, y):
    return x + y


@app.task(bind=True, max_retries=1)
def flaky(self, token):
    """Fails on its first run and is retried once (a new message with a countdown)."""
    if self.request.retries == 0:
        raise self.retry(exc=RuntimeError("first attempt of %s fails" % token), countdown=0.5)
    return {"token": token, "retries": self.request.retries}


@app.task
def fail(text):
    raise ValueError(text)


@app.task(bind=True)
def where(self):
    """Routed to ROUTED_QUEUE by task_routes; reports how the message reached the worker."""
    info = self.request.delivery_info or {}
    return {"routing_key": info.get("routing_key"), "exchange": info.get("exchange")}


@app.task(bind=True, acks_late=True)
def hold(self, token):
    """acks_late: the message is acked only after the task returns. On its first delivery it
    leaves a mark and blocks (the test kills the worker then); redelivered, it returns."""
    info = self.request.delivery_info or {}
    if not info.get("redelivered"):
        with open(os.path.join(MARKS, token), "w") as f:
            f.write(str(os.getpid()))
        time.sleep(60)
    return {"token": token, "redelivered": bool(info.get("redelivered")),
            "acks_late": self.acks_late}
