"""Exchange declaration and routing for every exchange type."""

import unittest

import pika

import support


class ExchangeTest(support.BrokerTestCase):

    def setUp(self):
        super().setUp()
        self.pub = self.confirmed_channel()

    def publish(self, exchange, key, body, headers=None):
        props = pika.BasicProperties(headers=headers) if headers is not None else None
        self.pub.basic_publish(exchange, key, body, properties=props)

    def bound_queue(self, exchange, key="", arguments=None):
        q = self.declare_queue()
        self.ch.queue_bind(q, exchange, routing_key=key, arguments=arguments)
        return q

    def test_declare_each_exchange_type_and_passive_redeclare(self):
        for kind in ("direct", "fanout", "topic", "headers"):
            e = self.declare_exchange(kind)
            # passive declare of an existing exchange succeeds, with any type given
            self.ch.exchange_declare(e, exchange_type=kind, passive=True)
            # an identical redeclare is a no-op
            self.ch.exchange_declare(e, exchange_type=kind)

    def test_direct_routes_on_exact_key(self):
        e = self.declare_exchange("direct")
        qa = self.bound_queue(e, "a")
        qb = self.bound_queue(e, "b")
        self.ch.queue_bind(qb, e, routing_key="a.b")
        self.publish(e, "a", b"1")
        self.publish(e, "b", b"2")
        self.publish(e, "a.b", b"3")
        self.publish(e, "c", b"4")
        self.assertEqual(self.get_all(qa), [b"1"])
        self.assertEqual(self.get_all(qb), [b"2", b"3"])

    def test_direct_delivers_once_per_queue_with_two_matching_bindings(self):
        e = self.declare_exchange("direct")
        q = self.bound_queue(e, "k1")
        self.ch.queue_bind(q, e, routing_key="k2")
        self.ch.queue_bind(q, e, routing_key="k1")  # duplicate binding is idempotent
        self.publish(e, "k1", b"x")
        self.assertEqual(self.get_all(q), [b"x"])

    def test_fanout_ignores_routing_key_and_copies_to_every_queue(self):
        e = self.declare_exchange("fanout")
        q1 = self.bound_queue(e, "whatever")
        q2 = self.bound_queue(e, "")
        self.publish(e, "unrelated.key", b"hi")
        self.assertEqual(self.get_all(q1), [b"hi"])
        self.assertEqual(self.get_all(q2), [b"hi"])

    def test_topic_star_matches_exactly_one_word(self):
        e = self.declare_exchange("topic")
        q = self.bound_queue(e, "a.*.c")
        for key in ("a.b.c", "a.c", "a.b.b.c", "a..c", "x.b.c"):
            self.publish(e, key, key.encode())
        self.assertEqual(self.get_all(q), [b"a.b.c", b"a..c"])

    def test_topic_hash_matches_zero_or_more_words(self):
        e = self.declare_exchange("topic")
        q = self.bound_queue(e, "a.#")
        q_all = self.bound_queue(e, "#")
        q_mid = self.bound_queue(e, "a.#.z")
        for key in ("a", "a.b", "a.b.c", "b.a", "a.z", "a.b.c.z", ""):
            self.publish(e, key, key.encode() or b"<empty>")
        self.assertEqual(self.get_all(q), [b"a", b"a.b", b"a.b.c", b"a.z", b"a.b.c.z"])
        self.assertEqual(self.get_all(q_all),
                         [b"a", b"a.b", b"a.b.c", b"b.a", b"a.z", b"a.b.c.z", b"<empty>"])
        self.assertEqual(self.get_all(q_mid), [b"a.z", b"a.b.c.z"])

    def test_headers_x_match_all_requires_every_header(self):
        e = self.declare_exchange("headers")
        q = self.bound_queue(e, arguments={"x-match": "all", "fmt": "pdf", "type": "report"})
        self.publish(e, "", b"both", {"fmt": "pdf", "type": "report", "extra": 1})
        self.publish(e, "", b"one", {"fmt": "pdf"})
        self.publish(e, "", b"wrong-value", {"fmt": "pdf", "type": "log"})
        self.publish(e, "", b"none", {})
        self.assertEqual(self.get_all(q), [b"both"])

    def test_headers_x_match_any_requires_one_header(self):
        e = self.declare_exchange("headers")
        q = self.bound_queue(e, arguments={"x-match": "any", "fmt": "pdf", "type": "report"})
        self.publish(e, "", b"both", {"fmt": "pdf", "type": "report"})
        self.publish(e, "", b"one", {"type": "report"})
        self.publish(e, "", b"wrong-value", {"fmt": "zip"})
        self.publish(e, "", b"none", {"other": "pdf"})
        self.assertEqual(self.get_all(q), [b"both", b"one"])

    def test_headers_default_x_match_is_all_and_int_values_match(self):
        e = self.declare_exchange("headers")
        q = self.bound_queue(e, arguments={"n": 7, "s": "v"})
        self.publish(e, "", b"yes", {"n": 7, "s": "v"})
        self.publish(e, "", b"no", {"n": 7})
        self.assertEqual(self.get_all(q), [b"yes"])

    def test_default_exchange_routes_by_queue_name(self):
        q = self.declare_queue()
        self.publish("", q, b"direct-to-queue")
        self.publish("", q + ".nope", b"lost")
        self.assertEqual(self.get_all(q), [b"direct-to-queue"])

    def test_default_exchange_cannot_be_bound_403(self):
        q = self.declare_queue()
        self.assertChannelClosed(403, self.ch.queue_bind, q, "", routing_key="x")

    def test_amq_prefix_exchange_declare_is_refused_403(self):
        self.assertChannelClosed(403, self.ch.exchange_declare,
                                 "amq." + self.name("x"), exchange_type="direct")

    def test_predeclared_amq_exchanges_exist(self):
        for e, kind in (("amq.direct", "direct"), ("amq.fanout", "fanout"),
                        ("amq.topic", "topic"), ("amq.headers", "headers"),
                        ("amq.match", "headers")):
            self.ch.exchange_declare(e, exchange_type=kind, passive=True)

    def test_exchange_to_exchange_binding_forwards_and_unbind_stops(self):
        src = self.declare_exchange("topic")
        dst = self.declare_exchange("fanout")
        self.ch.exchange_bind(destination=dst, source=src, routing_key="a.*")
        q = self.bound_queue(dst)
        self.publish(src, "a.b", b"via-e2e")
        self.publish(src, "b.b", b"filtered")
        self.assertEqual(self.get_all(q), [b"via-e2e"])
        self.ch.exchange_unbind(destination=dst, source=src, routing_key="a.*")
        self.publish(src, "a.b", b"after-unbind")
        self.assertEqual(self.get_all(q), [])

    def test_exchange_to_exchange_delivers_once_per_queue(self):
        src = self.declare_exchange("fanout")
        dst = self.declare_exchange("fanout")
        self.ch.exchange_bind(destination=dst, source=src)
        q = self.bound_queue(src)
        self.ch.queue_bind(q, dst)  # q reachable directly and through dst
        self.publish(src, "", b"once")
        self.assertEqual(self.get_all(q), [b"once"])

    def test_redeclare_with_other_type_fails_406(self):
        e = self.declare_exchange("direct")
        self.assertChannelClosed(406, self.ch.exchange_declare, e, exchange_type="fanout")
        # the exchange still exists
        ch = self.conn.channel()
        ch.exchange_declare(e, exchange_type="direct", passive=True)

    def test_redeclare_with_other_durability_fails_406(self):
        e = self.declare_exchange("direct", durable=False)
        self.assertChannelClosed(406, self.ch.exchange_declare, e,
                                 exchange_type="direct", durable=True)

    def test_passive_declare_of_missing_exchange_fails_404(self):
        self.assertChannelClosed(404, self.ch.exchange_declare, self.name("missing"),
                                 exchange_type="direct", passive=True)

    def test_exchange_delete_then_passive_fails_404(self):
        e = self.declare_exchange("fanout")
        self.ch.exchange_delete(e)
        self.assertChannelClosed(404, self.ch.exchange_declare, e, passive=True)

    def test_bind_to_missing_exchange_fails_404(self):
        q = self.declare_queue()
        self.assertChannelClosed(404, self.ch.queue_bind, q, self.name("missing"))

    def test_publish_to_missing_exchange_closes_channel_404(self):
        self.assertChannelClosed(404, self.publish_and_sync, self.pub, self.name("missing"), "k", b"x")


if __name__ == "__main__":
    unittest.main()
