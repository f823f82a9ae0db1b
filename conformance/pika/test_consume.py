"""Consumers: delivery, acknowledgements, requeue order, prefetch, cancellation."""

import unittest

import pika.exceptions

import support


class ConsumeTest(support.BrokerTestCase):

    def setUp(self):
        super().setUp()
        self.pub = self.confirmed_channel()

    def queue_with(self, *bodies, **kw):
        q = self.declare_queue(**kw)
        for b in bodies:
            self.pub.basic_publish("", q, b)
        return q

    def collect(self, q, n, ch=None, **kw):
        """basic_consume on ch (default self.ch) until n deliveries arrived (bounded)."""
        ch = ch or self.ch
        got = []
        tag = ch.basic_consume(q, lambda c, m, p, b: got.append((m, p, b)), **kw)
        self.wait_until(lambda: len(got) >= n, what="%d deliveries" % n)
        return tag, got

    def test_basic_consume_delivers_in_order_with_increasing_tags(self):
        q = self.queue_with(b"1", b"2", b"3")
        tag, got = self.collect(q, 3, consumer_tag="ctag-" + self.name())
        self.assertEqual([b for _, _, b in got], [b"1", b"2", b"3"])
        self.assertEqual([m.delivery_tag for m, _, _ in got], [1, 2, 3])
        for m, _, _ in got:
            self.assertEqual(m.consumer_tag, tag)
            self.assertFalse(m.redelivered)
            self.assertEqual((m.exchange, m.routing_key), ("", q))
        self.assertTrue(tag.startswith("ctag-"))

    def test_consume_generator_yields_then_times_out_on_inactivity(self):
        q = self.queue_with(b"a", b"b")
        seen = []
        for m, p, body in self.ch.consume(q, inactivity_timeout=0.3):
            if m is None:
                break
            seen.append(body)
            self.ch.basic_ack(m.delivery_tag)
            if len(seen) > 10:
                break
        self.assertEqual(seen, [b"a", b"b"])
        self.assertEqual(self.ch.cancel(), 0)
        self.assertEqual(self.message_count(q), 0)

    def test_auto_ack_consumer_removes_messages_without_ack(self):
        q = self.queue_with(b"1", b"2")
        self.collect(q, 2, auto_ack=True)
        self.ch.close()
        self.pump()
        self.assertEqual(self.message_count(q, ch=self.pub), 0)

    def test_basic_cancel_stops_deliveries(self):
        q = self.declare_queue()
        tag, got = self.collect(q, 0)
        self.ch.basic_cancel(tag)
        self.pub.basic_publish("", q, b"after-cancel")
        self.pump()
        self.assertEqual(got, [])
        self.assertEqual(self.message_count(q), 1)

    def test_queue_delete_cancels_consumer_with_basic_cancel(self):
        q = self.declare_queue()
        cancelled = []
        self.ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
        tag = self.ch.basic_consume(q, lambda *a: None)
        self.pub.queue_delete(q)
        self.wait_until(lambda: cancelled, what="broker basic.cancel")
        self.assertEqual(cancelled, [tag])
        self.assertTrue(self.ch.is_open)

    def test_exclusive_consumer_refuses_second_consumer_403(self):
        q = self.declare_queue()
        self.ch.basic_consume(q, lambda *a: None, exclusive=True)
        self.assertChannelClosed(403, self.conn.channel().basic_consume, q, lambda *a: None)

    def test_consume_on_missing_queue_fails_404(self):
        self.assertChannelClosed(404, self.ch.basic_consume, self.name("missing"),
                                 lambda *a: None)

    # --- acknowledgements ------------------------------------------------------------------

    def test_ack_multiple_acks_up_to_tag(self):
        q = self.queue_with(b"1", b"2", b"3")
        _, got = self.collect(q, 3)
        self.ch.basic_ack(got[1][0].delivery_tag, multiple=True)
        self.ch.close()  # only "3" was unacked
        self.wait_count(q, 1, ch=self.pub)
        self.assertEqual(self.get_all(q, ch=self.pub), [b"3"])

    def test_nack_multiple_requeue_redelivers_in_original_order(self):
        q = self.queue_with(b"1", b"2", b"3")
        _, got = self.collect(q, 3)
        self.ch.basic_nack(got[-1][0].delivery_tag, multiple=True, requeue=True)
        # the same consumer gets them again
        self.wait_until(lambda: len(got) >= 6, what="3 redeliveries")
        more = got[3:]
        self.assertEqual([b for _, _, b in more], [b"1", b"2", b"3"])
        self.assertTrue(all(m.redelivered for m, _, _ in more))
        self.assertEqual([m.delivery_tag for m, _, _ in more], [4, 5, 6])

    def test_reject_requeue_redelivers_with_redelivered_flag_at_head(self):
        q = self.queue_with(b"1", b"2")
        c = self.conn.channel()
        m1, _, _ = c.basic_get(q)
        c.basic_reject(m1.delivery_tag, requeue=True)
        m, _, body = c.basic_get(q, auto_ack=True)
        self.assertEqual(body, b"1", "a requeued message keeps its place at the head")
        self.assertTrue(m.redelivered)
        m, _, body = c.basic_get(q, auto_ack=True)
        self.assertEqual(body, b"2")
        self.assertFalse(m.redelivered)

    def test_reject_and_nack_without_requeue_drop_the_message(self):
        q = self.queue_with(b"1", b"2", b"3")
        _, got = self.collect(q, 3)
        self.ch.basic_reject(got[0][0].delivery_tag, requeue=False)
        self.ch.basic_nack(got[1][0].delivery_tag, multiple=False, requeue=False)
        self.ch.close()
        self.wait_count(q, 1, ch=self.pub)
        self.assertEqual(self.get_all(q, ch=self.pub), [b"3"])

    def test_ack_of_unknown_delivery_tag_fails_406(self):
        q = self.queue_with(b"1")
        m, _, _ = self.ch.basic_get(q)
        self.ch.basic_ack(m.delivery_tag + 10)
        # the ack has no reply; the next synchronous method sees the channel.close
        e = self.assertChannelClosed(406, self.ch.queue_declare, q, passive=True)
        self.assertIn("PRECONDITION_FAILED", e.reply_text)
        # and the unacked message went back to the queue
        self.wait_count(q, 1, ch=self.pub)

    def test_double_ack_fails_406(self):
        q = self.queue_with(b"1")
        m, _, _ = self.ch.basic_get(q)
        self.ch.basic_ack(m.delivery_tag)
        self.ch.basic_ack(m.delivery_tag)
        self.assertChannelClosed(406, self.ch.queue_declare, q, passive=True)

    def test_ack_on_auto_ack_delivery_fails_406(self):
        q = self.queue_with(b"1")
        m, _, _ = self.ch.basic_get(q, auto_ack=True)
        self.ch.basic_ack(m.delivery_tag)
        self.assertChannelClosed(406, self.ch.queue_declare, q, passive=True)

    def test_basic_recover_requeue_redelivers_unacked(self):
        q = self.queue_with(b"1", b"2")
        _, got = self.collect(q, 2)
        self.ch.basic_recover(requeue=True)
        self.wait_until(lambda: len(got) >= 4, what="redeliveries after recover")
        self.assertEqual([b for _, _, b in got[2:]], [b"1", b"2"])
        self.assertTrue(all(m.redelivered for m, _, _ in got[2:]))

    # --- prefetch --------------------------------------------------------------------------

    def test_qos_prefetch_count_limits_unacked_deliveries(self):
        q = self.queue_with(*[b"%d" % i for i in range(5)])
        self.ch.basic_qos(prefetch_count=2)
        _, got = self.collect(q, 2)
        self.pump()
        self.assertEqual(len(got), 2, "no more than prefetch_count unacked")
        self.ch.basic_ack(got[0][0].delivery_tag)
        self.wait_until(lambda: len(got) >= 3, what="third delivery after ack")
        self.pump()
        self.assertEqual(len(got), 3)
        self.ch.basic_ack(got[2][0].delivery_tag, multiple=True)
        self.wait_until(lambda: len(got) >= 5, what="all deliveries")
        self.assertEqual([b for _, _, b in got], [b"%d" % i for i in range(5)])

    def test_qos_prefetch_does_not_limit_auto_ack_consumers(self):
        q = self.queue_with(*[b"%d" % i for i in range(5)])
        self.ch.basic_qos(prefetch_count=1)
        _, got = self.collect(q, 5, auto_ack=True)
        self.assertEqual(len(got), 5)

    # --- channel close ---------------------------------------------------------------------

    def test_unacked_are_requeued_in_order_when_channel_closes(self):
        q = self.queue_with(b"1", b"2", b"3")
        c = self.conn.channel()
        _, got = self.collect(q, 3, ch=c)
        c.basic_ack(got[1][0].delivery_tag)
        c.close()
        self.wait_count(q, 2)
        m, _, body = self.ch.basic_get(q, auto_ack=True)
        self.assertEqual(body, b"1")
        self.assertTrue(m.redelivered)
        m, _, body = self.ch.basic_get(q, auto_ack=True)
        self.assertEqual(body, b"3")
        self.assertTrue(m.redelivered)
        self.assertEqual(self.ch.basic_get(q), (None, None, None))

    def test_unacked_are_requeued_when_connection_closes(self):
        q = self.queue_with(b"1", b"2")
        other = self.connect()
        c = other.channel()
        m, _, _ = c.basic_get(q)
        self.assertEqual(self.message_count(q), 1)
        other.close()
        self.wait_count(q, 2)
        m, _, body = self.ch.basic_get(q, auto_ack=True)
        self.assertEqual(body, b"1")
        self.assertTrue(m.redelivered)
        self.assertEqual(self.get_all(q), [b"2"])


if __name__ == "__main__":
    unittest.main()
