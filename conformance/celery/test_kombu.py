"""kombu (the messaging layer under Celery) against the broker under test.

kombu's amqp:// transport is py-amqp here (Debian python3-amqp; librabbitmq is not installed).
"""

import time

import amqp.exceptions
import kombu
import kombu.common

import support
from support import WAIT, QUIET


class KombuConnectionTest(support.BrokerTestCase):

    def test_connect_negotiates_heartbeat_and_reports_capabilities(self):
        c = self.conn(heartbeat=10)
        self.assertTrue(c.connected)
        self.assertEqual(c.transport.driver_type, "amqp")
        raw = c.connection  # the py-amqp connection
        # Both sides offered a heartbeat (the broker 60 s, kombu 10 s): the smaller one wins.
        self.assertEqual(raw.heartbeat, 10)
        caps = raw.server_properties.get("capabilities", {})
        for cap in ("publisher_confirms", "basic.nack", "consumer_cancel_notify",
                    "exchange_exchange_bindings", "per_consumer_qos"):
            self.assertIs(caps.get(cap), True, "server capability %s: %r" % (cap, caps))
        # A heartbeat check on a live connection raises nothing; a round trip still works.
        c.heartbeat_check()
        q = self.name("q")
        ok = c.default_channel.queue_declare(queue=q, durable=False, auto_delete=False)
        self.assertEqual(ok.queue, q)
        self.assertEqual((ok.message_count, ok.consumer_count), (0, 0))


    def test_idle_connection_kept_alive_by_heartbeats(self):
        # What a Celery worker's event loop does: drain events and call heartbeat_check()
        # often. py-amqp sends its own heartbeats and raises ConnectionForced ("Too many
        # heartbeats missed") when nothing arrived from the broker for two intervals.
        c = self.conn(heartbeat=1)
        raw = c.connection
        self.assertEqual(raw.heartbeat, 1)
        before = raw.bytes_recv
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            try:
                c.drain_events(timeout=0.2)
            except TimeoutError:
                pass
            c.heartbeat_check()
        # py-amqp's bytes_recv counts frames: only heartbeat frames came in, at least two.
        self.assertGreaterEqual(raw.bytes_recv - before, 2)
        q = self.name("q")
        self.assertEqual(c.default_channel.queue_declare(queue=q, auto_delete=True).queue, q)


    def test_qos_semantics_are_detected_as_rabbitmqs(self):
        # kombu decides from connection.start's server-properties whether basic.qos follows
        # the spec (global=false: the whole channel) or RabbitMQ >= 3.3 (global=false: each new
        # consumer; global=true: the channel). The Celery worker then sends its prefetch
        # updates with global = not qos_semantics_matches_spec. A broker with RabbitMQ's
        # semantics must be recognised as such, or Celery's prefetch updates (one per ETA
        # task it holds) do not reach its existing consumers: see test_celery's
        # test_eta_tasks_do_not_hold_back_other_tasks.
        c = self.conn()
        props = c.connection.server_properties
        self.assertIs(c.qos_semantics_matches_spec, False,
                      "kombu reads product=%r version=%r as spec basic.qos semantics"
                      % (props.get("product"), props.get("version")))


class KombuProducerConsumerTest(support.BrokerTestCase):

    def test_json_persistent_and_transient_then_consume_and_ack(self):
        name = self.name()
        ex = kombu.Exchange(name, type="direct", durable=True)
        queue = kombu.Queue(name, exchange=ex, routing_key="rk.json")
        # confirm_publish: every publish waits for the broker's basic.ack.
        c = self.conn(transport_options={"confirm_publish": True})
        prod = kombu.Producer(c, exchange=ex, serializer="json")
        prod.publish({"n": 1, "kind": "persistent"}, routing_key="rk.json", declare=[queue],
                     delivery_mode="persistent", headers={"x-seq": 1}, message_id="m-1")
        prod.publish({"n": 2, "kind": "transient"}, routing_key="rk.json",
                     delivery_mode="transient", headers={"x-seq": 2}, message_id="m-2")
        # Routed by a binding the declare made, not by queue name: another key goes nowhere.
        prod.publish({"n": 3}, routing_key="rk.other", delivery_mode="transient")
        self.assertEqual(support.queue_state(name), (2, 0))

        got = []

        def on_message(body, message):
            got.append((body, dict(message.properties), dict(message.headers),
                        dict(message.delivery_info)))
            message.ack()

        with kombu.Consumer(c, queues=[queue], callbacks=[on_message], accept=["json"]):
            self.drain(c, lambda: len(got) >= 2, "two deliveries")
            # Nothing else arrives (the rk.other message was not routed here).
            self.pump(c)
            self.assertEqual(len(got), 2)
        self.assertEqual([g[0] for g in got],
                         [{"n": 1, "kind": "persistent"}, {"n": 2, "kind": "transient"}])
        self.assertEqual([g[1]["delivery_mode"] for g in got], [2, 1])
        self.assertEqual([g[1]["content_type"] for g in got], ["application/json"] * 2)
        self.assertEqual([g[1]["content_encoding"] for g in got], ["utf-8"] * 2)
        self.assertEqual([g[1]["message_id"] for g in got], ["m-1", "m-2"])
        self.assertEqual([g[2].get("x-seq") for g in got], [1, 2])
        self.assertEqual([g[3]["routing_key"] for g in got], ["rk.json"] * 2)
        self.assertEqual([g[3]["exchange"] for g in got], [name] * 2)
        self.assertEqual([g[3]["redelivered"] for g in got], [False, False])
        # Both acks took effect: the queue is empty and nothing comes back after a reconnect.
        support.wait_for(lambda: support.queue_state(name) == (0, 0), "empty queue after acks")

    def test_requeue_sets_redelivered_and_reject_drops(self):
        name = self.name()
        queue = kombu.Queue(name, exchange=kombu.Exchange(name, type="direct"), routing_key=name)
        c = self.conn(transport_options={"confirm_publish": True})
        kombu.Producer(c).publish("plain text", exchange=name, routing_key=name,
                                  declare=[queue], serializer="raw", content_type="text/plain",
                                  content_encoding="utf-8")
        seen = []

        def on_message(body, message):
            seen.append((body, message.delivery_info["redelivered"]))
            if len(seen) == 1:
                message.requeue()
            else:
                message.reject()

        with kombu.Consumer(c, queues=[queue], callbacks=[on_message], accept=["text/plain"]):
            self.drain(c, lambda: len(seen) >= 2, "delivery and redelivery")
        self.assertEqual(seen, [("plain text", False), ("plain text", True)])
        support.wait_for(lambda: support.queue_state(name) == (0, 0), "empty queue after reject")

    def test_consumer_prefetch_limits_unacked_deliveries(self):
        name = self.name()
        queue = kombu.Queue(name, exchange=kombu.Exchange(name, type="direct"), routing_key=name)
        c = self.conn(transport_options={"confirm_publish": True})
        prod = kombu.Producer(c, exchange=queue.exchange, routing_key=name)
        for i in range(5):
            prod.publish({"i": i}, declare=[queue] if i == 0 else [])
        held = []
        # prefetch_count on the Consumer: basic.qos before basic.consume.
        with kombu.Consumer(c, queues=[queue], accept=["json"], prefetch_count=2,
                            callbacks=[lambda body, m: held.append(m)]):
            self.drain(c, lambda: len(held) >= 2, "two deliveries")
            # basic.qos prefetch_count=2: no third delivery while two are unacked.
            self.pump(c)
            self.assertEqual(len(held), 2)
            for m in list(held):
                m.ack()
            self.drain(c, lambda: len(held) >= 4, "two more deliveries after the acks")
            for m in held[2:]:
                m.ack()
            self.drain(c, lambda: len(held) >= 5, "the last delivery")
            held[4].ack()
        self.assertEqual([m.payload["i"] for m in held], [0, 1, 2, 3, 4])
        support.wait_for(lambda: support.queue_state(name) == (0, 0), "empty queue after acks")


    def test_direct_reply_to_rpc_round_trip(self):
        # The RPC pattern over direct reply-to: consume amq.rabbitmq.reply-to (no-ack), publish
        # with reply_to set to it; the server hands the responder a routable reply address.
        requests = self.name("requests")
        client, server = self.conn(), self.conn()
        req_q = kombu.Queue(requests, exchange=kombu.Exchange(requests), routing_key=requests,
                            durable=False, auto_delete=False)
        replies, served = [], []

        def on_request(body, message):
            served.append(message.properties.get("reply_to"))
            kombu.Producer(server.default_channel).publish(
                {"echo": body["ask"]}, exchange="", routing_key=message.properties["reply_to"],
                correlation_id=message.properties["correlation_id"])
            message.ack()

        ch = client.default_channel
        with kombu.Consumer(server, queues=[req_q], callbacks=[on_request], accept=["json"]), \
                kombu.Consumer(ch, queues=[kombu.Queue("amq.rabbitmq.reply-to", no_declare=True)],
                               no_ack=True, accept=["json"],
                               callbacks=[lambda body, m: replies.append(
                                   (body, m.properties.get("correlation_id")))]):
            kombu.Producer(ch).publish({"ask": "ping"}, exchange=req_q.exchange,
                                       routing_key=requests, reply_to="amq.rabbitmq.reply-to",
                                       correlation_id="c-1")
            self.drain(server, lambda: served, "the request")
            self.drain(client, lambda: replies, "the reply")
        self.assertTrue(served[0].startswith("amq.rabbitmq.reply-to."), served)
        self.assertEqual(replies, [({"echo": "ping"}, "c-1")])

    def test_priority_queue_delivers_highest_priority_first(self):
        name = self.name()
        c = self.conn(transport_options={"confirm_publish": True})
        queue = kombu.Queue(name, exchange=kombu.Exchange(name), routing_key=name,
                            max_priority=9)
        prod = kombu.Producer(c, exchange=queue.exchange, routing_key=name)
        for i, prio in enumerate((1, 9, 5)):
            prod.publish({"i": i}, priority=prio, declare=[queue])
        got = []
        ch = c.channel()
        for _ in range(3):
            m = queue(ch).get(no_ack=True, accept=["json"])
            got.append((m.payload["i"], m.properties["priority"]))
        self.assertEqual(got, [(1, 9), (2, 5), (0, 1)])

    def test_purge_returns_the_message_count(self):
        name = self.name()
        c = self.conn(transport_options={"confirm_publish": True})
        queue = kombu.Queue(name, exchange=kombu.Exchange(name), routing_key=name)
        prod = kombu.Producer(c, exchange=queue.exchange, routing_key=name)
        for i in range(4):
            prod.publish({"i": i}, declare=[queue])
        self.assertEqual(queue(c.channel()).purge(), 4)  # what `celery purge` reports
        self.assertEqual(support.queue_state(name), (0, 0))

    def test_deleting_the_queue_cancels_its_consumer(self):
        # consumer_cancel_notify: the broker sends basic.cancel; py-amqp raises
        # ConsumerCancelled from drain_events, which Celery treats as a lost connection.
        name = self.name()
        c = self.conn()
        queue = kombu.Queue(name, exchange=kombu.Exchange(name), routing_key=name)
        with kombu.Consumer(c, queues=[queue], accept=["json"], callbacks=[]):
            self.assertEqual(support.queue_state(name), (0, 1))
            support.delete_all(queues=[name])
            with self.assertRaises(amqp.exceptions.ConsumerCancelled):
                self.drain(c, lambda: False, "basic.cancel from the broker")


class KombuSimpleQueueTest(support.BrokerTestCase):

    def test_simple_queue_put_get_ack(self):
        name = self.name()
        c = self.conn()
        with c.SimpleQueue(name) as sq:
            sq.put({"hello": "world"})
            sq.put({"hello": "again"}, headers={"h": "v"})
            m1 = sq.get(block=True, timeout=WAIT)
            self.assertEqual(m1.payload, {"hello": "world"})
            self.assertEqual(m1.properties["delivery_mode"], 2)  # SimpleQueue: persistent
            m1.ack()
            m2 = sq.get(block=True, timeout=WAIT)
            self.assertEqual(m2.payload, {"hello": "again"})
            self.assertEqual(m2.headers.get("h"), "v")
            m2.ack()
            with self.assertRaises(sq.Empty):
                sq.get(block=True, timeout=QUIET)
        # SimpleQueue declares a durable queue: it outlives the consumer and is empty now.
        self.assertEqual(support.queue_state(name), (0, 0))
        ch = c.channel()
        with self.assertRaises(amqp.exceptions.PreconditionFailed):
            ch.queue_declare(queue=name, durable=False)  # inequivalent arg 'durable'

    def test_simple_queue_get_nowait_uses_basic_get(self):
        name = self.name()
        c = self.conn()
        with c.SimpleQueue(name) as sq:
            with self.assertRaises(sq.Empty):
                sq.get_nowait()
            sq.put("one", serializer="raw", content_type="text/plain")
            m = support.wait_for(lambda: _get_nowait(sq), "basic.get to return the message")
            self.assertEqual(m.payload, "one")
            self.assertEqual(m.content_type, "text/plain")
            m.ack()
            self.assertEqual(sq.qsize(), 0)

    def test_simple_buffer_is_transient_and_auto_deleted(self):
        # SimpleBuffer is kombu's ephemeral queue: durable=False, auto_delete=True, transient
        # messages, no-ack consumption.
        name = self.name()
        c = self.conn()
        buf = c.SimpleBuffer(name)
        try:
            buf.put({"x": 1})
            m = buf.get(block=True, timeout=WAIT)
            self.assertEqual(m.payload, {"x": 1})
            self.assertEqual(m.properties["delivery_mode"], 1)
            # While its consumer is attached the queue exists, and it is not durable.
            state = support.queue_state(name)
            self.assertIsNotNone(state)
            self.assertEqual(state[1], 1, "one consumer")
            ch = c.channel()
            with self.assertRaises(amqp.exceptions.PreconditionFailed):
                ch.queue_declare(queue=name, durable=True, auto_delete=True)
        finally:
            buf.close()
        # auto_delete: cancelling the last consumer deletes the queue.
        support.wait_for(lambda: support.queue_state(name) is None,
                         "the auto-delete queue to go after its consumer was cancelled")


class KombuDeclarationTest(support.BrokerTestCase):

    def test_default_and_transient_queue_declarations(self):
        c = self.conn()
        ch = c.default_channel
        # kombu's defaults: a durable direct exchange and a durable, non-exclusive,
        # non-auto-delete queue.
        durable = self.name("durable")
        q1 = kombu.Queue(durable, exchange=kombu.Exchange(durable), routing_key="k")
        q1(ch).declare()
        self.assertTrue(q1.durable and not q1.exclusive and not q1.auto_delete)
        # The transient form Celery uses for results and events: durable=False, auto_delete,
        # with x-expires and x-message-ttl from kombu's expires / message_ttl (seconds).
        transient = self.name("transient")
        q2 = kombu.Queue(transient, exchange=kombu.Exchange(transient, durable=False,
                                                            auto_delete=True),
                         routing_key="k", durable=False, auto_delete=False,
                         expires=60.0, message_ttl=30.0, max_length=2)
        q2(ch).declare()
        self.assertEqual(ch.prepare_queue_arguments({}, expires=60.0, message_ttl=30.0,
                                                    max_length=2),
                         {"x-expires": 60000, "x-message-ttl": 30000, "x-max-length": 2})
        # Redeclaring with the same arguments is fine; other arguments or durability: 406.
        q2(c.channel()).declare()
        with self.assertRaises(amqp.exceptions.PreconditionFailed):
            c.channel().queue_declare(queue=transient, durable=False, arguments={
                "x-expires": 60000, "x-message-ttl": 30000, "x-max-length": 3})
        for qname, durable_flag in ((durable, False), (transient, True)):
            with self.assertRaises(amqp.exceptions.PreconditionFailed, msg=qname):
                c.channel().queue_declare(queue=qname, durable=durable_flag)
        # x-max-length=2 (drop-head): three transient publishes leave the last two.
        prod = kombu.Producer(c.channel(), exchange=q2.exchange, routing_key="k")
        for i in range(3):
            prod.publish({"i": i}, delivery_mode="transient")
        support.wait_for(lambda: support.queue_state(transient) == (2, 0), "two messages")
        m = q2(c.channel()).get(no_ack=True, accept=["json"])
        self.assertEqual(m.payload, {"i": 1})

    def test_exclusive_queue_is_refused_to_other_connections(self):
        name = self.name()
        c = self.conn()
        kombu.Queue(name, exchange=kombu.Exchange(name), routing_key=name,
                    exclusive=True)(c.default_channel).declare()
        other = self.conn()
        with self.assertRaises(amqp.exceptions.ResourceLocked):
            other.channel().queue_declare(queue=name, passive=True)
        c.release()
        support.wait_for(lambda: support.queue_state(name) is None,
                         "the exclusive queue to go with its connection")

    def test_broadcast_fanout_reaches_every_consumer(self):
        # kombu.common.Broadcast: a fanout exchange and an auto-delete queue per consumer.
        name = self.name()
        c1, c2 = self.conn(), self.conn()
        b1 = kombu.common.Broadcast(name, queue=self.name("b1"), auto_delete=True)
        b2 = kombu.common.Broadcast(name, queue=self.name("b2"), auto_delete=True)
        got1, got2 = [], []
        with kombu.Consumer(c1, queues=[b1], accept=["json"],
                            callbacks=[lambda body, m: (got1.append(body), m.ack())]), \
                kombu.Consumer(c2, queues=[b2], accept=["json"],
                               callbacks=[lambda body, m: (got2.append(body), m.ack())]):
            kombu.Producer(self.conn()).publish({"all": True}, exchange=b1.exchange,
                                                routing_key="ignored")
            self.drain(c1, lambda: got1, "first broadcast copy")
            self.drain(c2, lambda: got2, "second broadcast copy")
        self.assertEqual((got1, got2), ([{"all": True}], [{"all": True}]))


def _get_nowait(sq):
    try:
        return sq.get_nowait()
    except sq.Empty:
        return None
