<?php
// Connection and channel lifecycle with php-amqplib (AMQP 0-9-1 §4.2.3 connection class,
// §4.2.4 channel class).

declare(strict_types=1);

use PhpAmqpLib\Exception\AMQPConnectionClosedException;
use PhpAmqpLib\Exception\AMQPProtocolChannelException;

test('connection_open_reports_capabilities_and_closes', function (T $t): void {
    $c = $t->connect();
    ok($c->isConnected(), 'an open connection after connection.open-ok');
    $props = $c->getServerProperties();
    // Server properties come as [type, value] pairs, nested tables included.
    eq('F', $props['capabilities'][0] ?? null, 'type of the capabilities server property');
    $caps = $props['capabilities'][1];
    foreach (['publisher_confirms', 'basic.nack', 'consumer_cancel_notify', 'exchange_exchange_bindings',
                 'connection.blocked', 'authentication_failure_close', 'per_consumer_qos', 'direct_reply_to'] as $cap) {
        eq(['t', 1], $caps[$cap] ?? null, "capability $cap");
    }
    eq('S', $props['product'][0] ?? null, 'type of the product server property');
    ok(($props['product'][1] ?? '') !== '', 'a product name');
    $ch = $c->channel();
    ok($ch->is_open(), 'an open channel');
    $ch->close();
    ok(!$ch->is_open(), 'the channel closed after channel.close-ok');
    $c->close();
    ok(!$c->isConnected(), 'the connection closed after connection.close-ok');
});

test('connection_wrong_password_is_access_refused_403', function (T $t): void {
    $e = raises(AMQPConnectionClosedException::class, 403,
        fn() => $t->connect(null, 'definitely-not-the-password'), 'AMQPLAIN login with a wrong password');
    ok(str_starts_with($e->getMessage(), 'ACCESS_REFUSED'), 'reply text starting ACCESS_REFUSED, got ' .
        show($e->getMessage()));
});

test('connection_unknown_vhost_is_not_allowed_530', function (T $t): void {
    $e = raises(AMQPConnectionClosedException::class, 530,
        fn() => $t->connect(null, null, $t->unique('no-such-vhost')), 'connection.open of a missing vhost');
    ok(str_starts_with($e->getMessage(), 'NOT_ALLOWED'), 'reply text starting NOT_ALLOWED, got ' .
        show($e->getMessage()));
});

test('channel_error_closes_only_that_channel', function (T $t): void {
    $c = $t->connect();
    $bad = $c->channel();
    $good = $c->channel();
    ok($bad->getChannelId() !== $good->getChannelId(), 'distinct channel ids');
    raises(AMQPProtocolChannelException::class, 404,
        fn() => $bad->queue_declare($t->unique('missing'), passive: true), 'passive declare of a missing queue');
    ok(!$bad->is_open(), 'the failed channel closed');
    ok($c->isConnected(), 'the connection still open after a channel error');
    $q = $t->queue();
    [$name, , ] = $good->queue_declare($q, auto_delete: false);
    eq($q, $name, 'queue.declare-ok on the other channel');
    $again = $c->channel();
    ok($again->is_open(), 'a new channel on the same connection');
});
