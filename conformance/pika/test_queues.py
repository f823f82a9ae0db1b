"""Queue declare, bind, unbind, purge, delete, exclusivity."""

import time
import unittest

import pika.exceptions

import support


class QueueTest(support.BrokerTestCase):

    def setUp(self):
        super().setUp()
        self.pub = self.confirmed_channel()

    def fill(self, q, n):
        for i in range(n):
            self.pub.basic_publish("", q, b"m%d" % i)

    def test_declare_ok_reports_message_and_consumer_counts(self):
        q = self.declare_queue()
        ok = self.ch.queue_declare(q)
        self.assertEqual(ok.method.queue, q)
        self.assertEqual((ok.method.message_count, ok.method.consumer_count), (0, 0))
        self.fill(q, 3)
        self.assertEqual(self.ch.queue_declare(q).method.message_count, 3)
        c = self.conn.channel()
        c.basic_qos(prefetch_count=1)
        got = []
        c.basic_consume(q, lambda ch, m, p, b: got.append(b))
        self.wait_until(lambda: len(got) == 1, what="one delivery")
        ok = self.ch.queue_declare(q, passive=True)
        # message_count counts ready messages only, not the unacked one
        self.assertEqual((ok.method.message_count, ok.method.consumer_count), (2, 1))
        c.close()  # the unacked message goes back
        self.wait_count(q, 3)
        ok = self.ch.queue_declare(q, passive=True)
        self.assertEqual((ok.method.message_count, ok.method.consumer_count), (3, 0))

    def test_server_named_queue_starts_with_amq_gen(self):
        q = self.declare_queue(name="", exclusive=True)
        self.assertTrue(q.startswith("amq.gen-"), q)
        self.assertGreater(len(q), len("amq.gen-"))
        q2 = self.declare_queue(name="", exclusive=True)
        self.assertNotEqual(q, q2)
        self.assertEqual(self.ch.queue_declare(q, passive=True).method.queue, q)

    def test_amq_prefix_queue_name_is_refused_403(self):
        self.assertChannelClosed(403, self.ch.queue_declare, "amq." + self.name("q"))

    def test_bind_and_unbind_change_routing(self):
        e = self.declare_exchange("direct")
        q = self.declare_queue()
        self.ch.queue_bind(q, e, routing_key="k")
        self.pub.basic_publish(e, "k", b"bound")
        self.ch.queue_unbind(q, e, routing_key="k")
        self.pub.basic_publish(e, "k", b"unbound")
        self.assertEqual(self.get_all(q), [b"bound"])
        # unbinding a binding that does not exist is not an error
        self.ch.queue_unbind(q, e, routing_key="never-bound")

    def test_purge_returns_count_and_empties_queue(self):
        q = self.declare_queue()
        self.fill(q, 4)
        ok = self.ch.queue_purge(q)
        self.assertEqual(ok.method.message_count, 4)
        self.assertEqual(self.message_count(q), 0)
        self.assertEqual(self.ch.queue_purge(q).method.message_count, 0)

    def test_delete_returns_count_and_queue_is_gone_404(self):
        q = self.declare_queue()
        self.fill(q, 2)
        ok = self.ch.queue_delete(q)
        self.assertEqual(ok.method.message_count, 2)
        self.assertChannelClosed(404, self.ch.queue_declare, q, passive=True)

    def test_delete_if_empty_refuses_non_empty_queue_406(self):
        q = self.declare_queue()
        self.fill(q, 1)
        self.assertChannelClosed(406, self.ch.queue_delete, q, if_empty=True)
        self.assertEqual(self.message_count(q, ch=self.conn.channel()), 1)

    def test_delete_if_unused_refuses_queue_with_consumer_406(self):
        q = self.declare_queue()
        c = self.conn.channel()
        c.basic_consume(q, lambda *a: None)
        self.assertChannelClosed(406, self.ch.queue_delete, q, if_unused=True)
        c.close()
        ch = self.conn.channel()
        self.assertEqual(ch.queue_delete(q, if_unused=True).method.message_count, 0)

    def test_redeclare_with_other_durability_fails_406(self):
        q = self.declare_queue(durable=False)
        self.assertChannelClosed(406, self.ch.queue_declare, q, durable=True)

    def test_redeclare_with_other_arguments_fails_406(self):
        q = self.declare_queue(arguments={"x-max-length": 10})
        self.assertChannelClosed(406, self.ch.queue_declare, q,
                                 arguments={"x-max-length": 20})

    def test_passive_declare_of_missing_queue_fails_404(self):
        self.assertChannelClosed(404, self.ch.queue_declare, self.name("missing"), passive=True)

    def test_exclusive_queue_is_locked_for_other_connections_405(self):
        q = self.declare_queue(exclusive=True)
        other = self.connect()
        self.assertChannelClosed(405, other.channel().queue_declare, q)
        self.assertChannelClosed(405, other.channel().queue_declare, q, passive=True)
        self.assertChannelClosed(405, other.channel().basic_consume, q, lambda *a: None)
        self.assertChannelClosed(405, other.channel().basic_get, q)
        self.assertChannelClosed(405, other.channel().queue_delete, q)
        # the owner keeps full access
        self.assertEqual(self.ch.queue_declare(q, passive=True).method.queue, q)

    def test_exclusive_queue_is_deleted_when_owner_connection_closes(self):
        owner = self.connect()
        q = self.declare_queue(ch=owner.channel(), exclusive=True)
        owner.close()
        self.wait_gone(q)

    def test_auto_delete_queue_goes_away_after_last_consumer_cancels(self):
        q = self.declare_queue(auto_delete=True)
        c = self.conn.channel()
        tag = c.basic_consume(q, lambda *a: None)
        self.pump(0.1)
        self.ch.queue_declare(q, passive=True)  # still there while it has a consumer
        c.basic_cancel(tag)
        self.wait_gone(q)

    def wait_gone(self, q):
        """Polls (bounded) until a passive declare of q fails with 404."""
        deadline = time.monotonic() + support.WAIT
        while True:
            ch = self.conn.channel()
            try:
                ch.queue_declare(q, passive=True)
            except pika.exceptions.ChannelClosedByBroker as e:
                self.assertEqual(e.reply_code, 404, e.reply_text)
                return
            ch.close()
            if time.monotonic() > deadline:
                self.fail("queue %s still exists after %.1fs" % (q, support.WAIT))
            time.sleep(0.02)

if __name__ == "__main__":
    unittest.main()
