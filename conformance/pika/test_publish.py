"""Publishing: mandatory returns, properties, large bodies, basic.get, confirms, transactions."""

import datetime
import decimal
import os
import unittest

import pika
import pika.exceptions

import support


class PublishTest(support.BrokerTestCase):

    def setUp(self):
        super().setUp()
        self.pub = self.confirmed_channel()

    # --- mandatory / basic.return ----------------------------------------------------------

    def test_mandatory_unroutable_is_returned_312_no_route(self):
        e = self.declare_exchange("direct")
        returned = []
        self.ch.add_on_return_callback(lambda ch, m, p, b: returned.append((m, p, b)))
        props = pika.BasicProperties(message_id="ret-1", headers={"h": "v"})
        self.ch.basic_publish(e, "nowhere", b"bounce", properties=props, mandatory=True)
        self.wait_until(lambda: returned, what="basic.return")
        m, p, b = returned[0]
        self.assertEqual(m.reply_code, 312)
        self.assertEqual(m.reply_text, "NO_ROUTE")
        self.assertEqual((m.exchange, m.routing_key), (e, "nowhere"))
        self.assertEqual(b, b"bounce")
        self.assertEqual(p.message_id, "ret-1")
        self.assertEqual(p.headers, {"h": "v"})
        self.pump()
        self.assertEqual(len(returned), 1)
        self.assertTrue(self.ch.is_open, "a return does not close the channel")

    def test_mandatory_routable_is_not_returned(self):
        q = self.declare_queue()
        returned = []
        self.ch.add_on_return_callback(lambda *a: returned.append(a))
        self.ch.basic_publish("", q, b"ok", mandatory=True)
        # Without confirms even the same channel may not see the message at once (RabbitMQ).
        self.wait_until(lambda: self.message_count(q) == 1, what="message in queue")
        self.pump()
        self.assertEqual(returned, [])

    def test_mandatory_unroutable_with_confirms_raises_unroutable_error(self):
        e = self.declare_exchange("fanout")
        with self.assertRaises(pika.exceptions.UnroutableError) as cm:
            self.pub.basic_publish(e, "", b"bounce", mandatory=True)
        msgs = cm.exception.messages
        self.assertEqual(len(msgs), 1)
        self.assertEqual(msgs[0].method.reply_code, 312)
        self.assertEqual(msgs[0].body, b"bounce")
        # the channel stays usable
        q = self.declare_queue(ch=self.pub)
        self.pub.basic_publish("", q, b"after", mandatory=True)
        self.assertEqual(self.get_all(q), [b"after"])

    def test_non_mandatory_unroutable_is_confirmed_and_dropped(self):
        e = self.declare_exchange("direct")
        self.pub.basic_publish(e, "nowhere", b"dropped")  # acked, no exception
        self.assertTrue(self.pub.is_open)

    # --- properties and bodies -------------------------------------------------------------

    def test_all_basic_properties_and_typed_headers_round_trip(self):
        q = self.declare_queue()
        headers = {
            "str": "text ü",
            "bytes": b"\x00\x01\xff",
            "int": 42,
            "neg": -7,
            "int64": 2 ** 40,
            "true": True,
            "false": False,
            "dec": decimal.Decimal("3.14"),
            "time": datetime.datetime(2024, 1, 2, 3, 4, 5),
            "table": {"nested": "yes", "n": 1},
            "array": [1, "two", True],
            "void": None,
        }
        props = pika.BasicProperties(
            content_type="application/json",
            content_encoding="gzip",
            headers=headers,
            delivery_mode=2,
            priority=5,
            correlation_id="corr-1",
            reply_to="reply.queue",
            expiration="60000",
            message_id="msg-1",
            timestamp=1700000000,
            type="order.created",
            user_id="guest",
            app_id="pika-conformance",
        )
        self.pub.basic_publish("", q, b"{}", properties=props)
        m, p, body = self.ch.basic_get(q, auto_ack=True)
        self.assertIsNotNone(m, "message must be in the queue")
        self.assertEqual(body, b"{}")
        for attr in ("content_type", "content_encoding", "delivery_mode", "priority",
                     "correlation_id", "reply_to", "expiration", "message_id", "timestamp",
                     "type", "user_id", "app_id"):
            self.assertEqual(getattr(p, attr), getattr(props, attr), attr)
        self.assertEqual(p.headers, headers)

    def test_absent_properties_stay_absent(self):
        q = self.declare_queue()
        self.pub.basic_publish("", q, b"bare")
        m, p, body = self.ch.basic_get(q, auto_ack=True)
        self.assertEqual(body, b"bare")
        for attr in ("content_type", "headers", "delivery_mode", "priority", "correlation_id",
                     "reply_to", "expiration", "message_id", "timestamp", "type", "user_id",
                     "app_id"):
            self.assertIsNone(getattr(p, attr), attr)

    def test_user_id_other_than_connection_user_fails_406(self):
        q = self.declare_queue()
        props = pika.BasicProperties(user_id="somebody-else")
        self.assertChannelClosed(406, self.publish_and_sync, self.pub, "", q, b"x", properties=props)

    def test_empty_body_round_trips(self):
        q = self.declare_queue()
        self.pub.basic_publish("", q, b"")
        m, p, body = self.ch.basic_get(q, auto_ack=True)
        self.assertIsNotNone(m)
        self.assertEqual(body, b"")

    def test_large_body_2mib_split_across_frames_round_trips(self):
        frame_max = self.conn._impl.params.frame_max
        size = 2 * 1024 * 1024
        self.assertLess(frame_max, size, "body must need several frames")
        q = self.declare_queue()
        body = os.urandom(size)
        self.pub.basic_publish("", q, body)
        self.pub.basic_publish("", q, b"small-after")
        m, p, got = self.ch.basic_get(q, auto_ack=True)
        self.assertEqual(len(got), size)
        self.assertEqual(got, body)
        # the same through a consumer
        self.pub.basic_publish("", q, body)
        out = []
        for m, p, b in self.ch.consume(q, auto_ack=True, inactivity_timeout=1):
            if m is None:
                break
            out.append(b)
            if len(out) == 2:
                break
        self.ch.cancel()
        self.assertEqual(out, [b"small-after", body])

    # --- basic.get -------------------------------------------------------------------------

    def test_basic_get_reports_remaining_count_then_get_empty(self):
        q = self.declare_queue()
        for b in (b"a", b"b"):
            self.pub.basic_publish("", q, b)
        m, p, body = self.ch.basic_get(q, auto_ack=False)
        self.assertEqual(body, b"a")
        self.assertEqual(m.message_count, 1)
        self.assertFalse(m.redelivered)
        self.assertEqual((m.exchange, m.routing_key), ("", q))
        self.assertEqual(m.delivery_tag, 1)
        self.ch.basic_ack(m.delivery_tag)
        m, p, body = self.ch.basic_get(q, auto_ack=True)
        self.assertEqual((body, m.message_count, m.delivery_tag), (b"b", 0, 2))
        self.assertEqual(self.ch.basic_get(q), (None, None, None))

    def test_basic_get_on_missing_queue_fails_404(self):
        self.assertChannelClosed(404, self.ch.basic_get, self.name("missing"))

    # --- publisher confirms ----------------------------------------------------------------

    def test_confirms_ack_every_publish(self):
        q = self.declare_queue()
        for i in range(20):
            self.pub.basic_publish("", q, b"%d" % i)  # raises on nack
        self.assertEqual(self.message_count(q), 20)
        self.assertEqual(self.get_all(q), [b"%d" % i for i in range(20)])

    def test_confirms_with_persistent_message_to_durable_queue(self):
        q = self.declare_queue(durable=True)
        self.pub.basic_publish("", q, b"p", properties=pika.BasicProperties(delivery_mode=2))
        m, p, body = self.ch.basic_get(q, auto_ack=True)
        self.assertEqual((body, p.delivery_mode), (b"p", 2))

    def test_confirm_select_on_transactional_channel_fails_406(self):
        self.ch.tx_select()
        self.assertChannelClosed(406, self.ch.confirm_delivery)

    def test_tx_select_on_confirm_channel_fails_406(self):
        self.assertChannelClosed(406, self.pub.tx_select)

    # --- transactions ----------------------------------------------------------------------

    def test_tx_publishes_are_invisible_until_commit_and_dropped_on_rollback(self):
        q = self.declare_queue()
        self.ch.tx_select()
        self.ch.basic_publish("", q, b"rolled-back")
        self.assertEqual(self.message_count(q, ch=self.pub), 0)
        self.ch.tx_rollback()
        self.assertEqual(self.message_count(q, ch=self.pub), 0)
        self.ch.basic_publish("", q, b"c1")
        self.ch.basic_publish("", q, b"c2")
        self.assertEqual(self.message_count(q, ch=self.pub), 0)
        self.ch.tx_commit()
        self.assertEqual(self.get_all(q, ch=self.pub), [b"c1", b"c2"])
        # the channel stays transactional: the next publish needs another commit
        self.ch.basic_publish("", q, b"c3")
        self.assertEqual(self.message_count(q, ch=self.pub), 0)
        self.ch.tx_commit()
        self.assertEqual(self.get_all(q, ch=self.pub), [b"c3"])

    def test_tx_acks_take_effect_only_on_commit(self):
        q = self.declare_queue()
        for b in (b"first", b"second"):
            self.pub.basic_publish("", q, b)
        c = self.conn.channel()
        m1, _, _ = c.basic_get(q)
        m2, _, _ = c.basic_get(q)
        c.tx_select()
        c.basic_ack(m1.delivery_tag)
        c.tx_rollback()  # the ack is discarded; first stays unacked
        c.basic_ack(m2.delivery_tag)
        c.tx_commit()
        c.close()  # first goes back to the queue
        self.wait_count(q, 1)
        m, p, body = self.ch.basic_get(q, auto_ack=True)
        self.assertEqual(body, b"first")
        self.assertTrue(m.redelivered)
        self.assertEqual(self.ch.basic_get(q), (None, None, None))

    def test_tx_commit_without_select_fails_406(self):
        self.assertChannelClosed(406, self.ch.tx_commit)

    def test_tx_rollback_without_select_fails_406(self):
        self.assertChannelClosed(406, self.ch.tx_rollback)


if __name__ == "__main__":
    unittest.main()
