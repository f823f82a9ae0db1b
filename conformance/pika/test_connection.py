"""Connection handshake, authentication, vhosts and channels."""

import unittest

import pika
import pika.exceptions

import support


class ConnectionTest(support.BrokerTestCase):

    def test_handshake_advertises_capabilities_in_server_properties(self):
        props = self.conn._impl.server_properties
        self.assertIn("product", props)
        self.assertIn("version", props)
        caps = props.get("capabilities")
        self.assertIsInstance(caps, dict)
        for cap in ("publisher_confirms", "exchange_exchange_bindings", "basic.nack",
                    "consumer_cancel_notify", "authentication_failure_close"):
            self.assertIs(caps.get(cap), True, "capability %s" % cap)
        self.assertTrue(self.conn.publisher_confirms_supported)
        self.assertTrue(self.conn.basic_nack_supported)
        self.assertTrue(self.conn.exchange_exchange_bindings_supported)
        self.assertTrue(self.conn.consumer_cancel_notify_supported)

    def test_tune_negotiates_frame_max_and_channel_max(self):
        p = self.conn._impl.params
        self.assertGreaterEqual(p.frame_max, 4096)
        self.assertLessEqual(p.frame_max, 131072)  # pika's own maximum
        self.assertGreater(p.channel_max, 0)

    def test_channels_open_and_close_independently(self):
        chans = [self.conn.channel() for _ in range(3)]
        numbers = [c.channel_number for c in chans + [self.ch]]
        self.assertEqual(len(set(numbers)), 4, "channel numbers must be distinct")
        chans[1].close()
        self.assertTrue(chans[1].is_closed)
        # The others still work: a synchronous method round-trips.
        q = self.declare_queue(ch=chans[0])
        self.assertEqual(chans[2].queue_declare(q, passive=True).method.queue, q)
        self.assertTrue(self.ch.is_open)

    def test_channel_error_closes_only_that_channel(self):
        other = self.conn.channel()
        self.assertChannelClosed(404, other.queue_declare, self.name("missing"), passive=True)
        self.assertTrue(other.is_closed)
        self.assertTrue(self.conn.is_open)
        q = self.declare_queue()
        self.assertEqual(self.message_count(q), 0)

    def test_connection_close_is_clean(self):
        c = support.connect()
        ch = c.channel()
        self.assertTrue(ch.is_open)
        c.close()
        self.assertTrue(c.is_closed)
        self.assertTrue(ch.is_closed)

    def test_wrong_password_is_refused_with_403(self):
        with self.assertRaises(pika.exceptions.ProbableAuthenticationError) as cm:
            support.connect(support.url_with(password="definitely-wrong"))
        # The client advertises authentication_failure_close, so the broker must say why.
        self.assertIn("403", str(cm.exception))
        self.assertIn("ACCESS_REFUSED", str(cm.exception))

    def test_unknown_user_is_refused_with_403(self):
        with self.assertRaises(pika.exceptions.ProbableAuthenticationError) as cm:
            support.connect(support.url_with(user="no-such-user-pika"))
        self.assertIn("ACCESS_REFUSED", str(cm.exception))

    def test_unknown_vhost_is_refused_with_530(self):
        with self.assertRaises(pika.exceptions.ProbableAccessDeniedError) as cm:
            support.connect(support.url_with(vhost="no-such-vhost-pika"))
        self.assertIn("530", str(cm.exception))
        self.assertIn("NOT_ALLOWED", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
