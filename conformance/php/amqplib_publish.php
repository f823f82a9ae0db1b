<?php
// Publishing with php-amqplib: content properties and field tables (AMQP 0-9-1 §4.2.6 and
// §4.2.5.5), publisher confirms (RabbitMQ's confirm class), mandatory returns (§1.8.3.9), and
// content split across frames (§4.2.6).

declare(strict_types=1);

use PhpAmqpLib\Message\AMQPMessage;
use PhpAmqpLib\Wire\AMQPArray;
use PhpAmqpLib\Wire\AMQPDecimal;
use PhpAmqpLib\Wire\AMQPTable;

test('publish_properties_and_nested_headers_round_trip', function (T $t): void {
    $ch = $t->channel();
    $q = $t->queue();
    $ch->queue_declare($q, durable: true, auto_delete: false);

    $headers = new AMQPTable([
        'string' => 'héllo',
        'int' => 42,
        'negative' => -7,
        'big' => 5_000_000_000,
        'bool' => true,
        'false' => false,
        'float-as-string' => 2.5, // php-amqplib encodes a bare float as a string
        'nested' => ['inner' => 'value', 'n' => 1, 'deeper' => ['flag' => false]],
        'list' => [1, 'two', true, ['k' => 'v']],
    ]);
    $headers->set('decimal', new AMQPDecimal(31415, 4));
    $headers->set('short', -300, AMQPTable::T_INT_SHORT);
    $headers->set('byte', -5, AMQPTable::T_INT_SHORTSHORT);
    $headers->set('timestamp', new \DateTime('@1700000000'));
    $headers->set('void', null);
    $headers->set('bytes', "\x00\x01\xff", AMQPTable::T_BYTES);
    $headers->set('array', new AMQPArray([10, 'x', false]));

    $sent = new AMQPMessage('{"hello":"world"}', [
        'content_type' => 'application/json',
        'content_encoding' => 'utf-8',
        'application_headers' => $headers,
        'delivery_mode' => AMQPMessage::DELIVERY_MODE_PERSISTENT,
        'priority' => 3,
        'correlation_id' => 'corr-1',
        'reply_to' => 'reply.queue',
        'expiration' => '60000',
        'message_id' => 'msg-1',
        'timestamp' => 1700000001,
        'type' => 'greeting',
        'user_id' => $t->broker->user,
        'app_id' => 'php-conformance',
    ]);
    $ch->basic_publish($sent, '', $q);

    $m = $ch->basic_get($q);
    ok($m !== null, 'a message from basic.get');
    eq('{"hello":"world"}', $m->getBody(), 'body');
    $props = $m->get_properties();
    $want = [
        'content_type' => 'application/json',
        'content_encoding' => 'utf-8',
        'delivery_mode' => 2,
        'priority' => 3,
        'correlation_id' => 'corr-1',
        'reply_to' => 'reply.queue',
        'expiration' => '60000',
        'message_id' => 'msg-1',
        'timestamp' => 1700000001,
        'type' => 'greeting',
        'user_id' => $t->broker->user,
        'app_id' => 'php-conformance',
    ];
    foreach ($want as $k => $v) {
        eq($v, $props[$k] ?? null, "property $k");
    }
    $got = $props['application_headers']->getNativeData();
    $wantHeaders = [
        'string' => 'héllo',
        'int' => 42,
        'negative' => -7,
        'big' => 5_000_000_000,
        'bool' => true,
        'false' => false,
        'float-as-string' => '2.5',
        'nested' => ['inner' => 'value', 'n' => 1, 'deeper' => ['flag' => false]],
        'list' => [1, 'two', true, ['k' => 'v']],
        'short' => -300,
        'byte' => -5,
        'void' => null,
        'bytes' => "\x00\x01\xff",
        'array' => [10, 'x', false],
    ];
    foreach ($wantHeaders as $k => $v) {
        ok(array_key_exists($k, $got), "header $k present");
        eq($v, $got[$k], "header $k");
    }
    ok($got['decimal'] instanceof AMQPDecimal, 'header decimal decoded as a decimal, got ' . show($got['decimal']));
    eq([31415, 4], [$got['decimal']->getN(), $got['decimal']->getE()], 'header decimal digits and scale');
    ok($got['timestamp'] instanceof \DateTimeInterface, 'header timestamp decoded as a date');
    eq(1700000000, $got['timestamp']->getTimestamp(), 'header timestamp');
    eq(count($wantHeaders) + 2, count($got), 'number of headers');
    $m->ack();
});

test('basic_get_and_ack', function (T $t): void {
    $c = $t->connect();
    $ch = $c->channel();
    $q = $t->queue();
    $ch->queue_declare($q, auto_delete: false);
    $ch->basic_publish(new AMQPMessage('first'), '', $q);
    $ch->basic_publish(new AMQPMessage('second'), '', $q);

    $m = $ch->basic_get($q);
    ok($m !== null, 'a message from basic.get');
    eq('first', $m->getBody(), 'body of the first get');
    eq(1, $m->getMessageCount(), 'basic.get-ok message-count (messages left)');
    eq('', $m->getExchange(), 'exchange of a default-exchange publish');
    eq($q, $m->getRoutingKey(), 'routing key');
    eq(false, $m->isRedelivered(), 'redelivered of a first delivery');
    eq(1, $m->getDeliveryTag(), 'first delivery tag on the channel');
    $m->ack();

    $m2 = $ch->basic_get($q);
    eq('second', $m2?->getBody(), 'body of the second get');
    eq(2, $m2->getDeliveryTag(), 'second delivery tag');
    eq(0, $m2->getMessageCount(), 'message-count of the last message');
    eq(null, $ch->basic_get($q), 'basic.get-empty on an empty queue');
    // "second" is unacked: closing the channel requeues it, "first" was acked and is gone.
    $ch->close();
    $ch = $c->channel();
    $again = $ch->basic_get($q, true);
    eq('second', $again?->getBody(), 'the unacked message after the channel closed');
    eq(true, $again->isRedelivered(), 'redelivered flag of a requeued message');
    eq(null, $ch->basic_get($q, true), 'nothing else (the acked message is gone)');
});

test('publisher_confirms_ack_every_publish', function (T $t): void {
    $ch = $t->channel();
    $q = $t->queue();
    $ch->queue_declare($q, durable: true, auto_delete: false);
    $ch->confirm_select();
    $acked = [];
    $nacked = 0;
    $ch->set_ack_handler(function (AMQPMessage $m) use (&$acked): void {
        $acked[] = $m->getBody();
    });
    $ch->set_nack_handler(function (AMQPMessage $m) use (&$nacked): void {
        $nacked++;
    });
    $sent = [];
    for ($i = 0; $i < 50; $i++) {
        $sent[] = "c$i";
        $ch->basic_publish(new AMQPMessage("c$i", ['delivery_mode' => 2]), '', $q);
    }
    // An unroutable publish is confirmed too (basic.ack, no basic.return without mandatory).
    $sent[] = 'unroutable';
    $ch->basic_publish(new AMQPMessage('unroutable'), '', $t->unique('nowhere'));
    $ch->wait_for_pending_acks(WAIT);
    sort($acked);
    sort($sent);
    eq($sent, $acked, 'messages acked by the broker');
    eq(0, $nacked, 'nacks');
    [, $n, ] = $ch->queue_declare($q, passive: true);
    eq(50, $n, 'messages in the queue after the confirms');
});

test('mandatory_unroutable_publish_is_returned_312', function (T $t): void {
    $ch = $t->channel();
    $x = $t->exchange();
    $ch->exchange_declare($x, 'direct', auto_delete: false);
    $returned = [];
    $ch->set_return_listener(function (int $code, string $text, string $exchange, string $key, AMQPMessage $m)
    use (&$returned): void {
        $returned[] = [$code, $text, $exchange, $key, $m->getBody(), $m->get('correlation_id')];
    });
    $acks = 0;
    $ch->set_ack_handler(function () use (&$acks): void {
        $acks++;
    });
    $ch->confirm_select();
    $ch->basic_publish(new AMQPMessage('lost', ['correlation_id' => 'r1']), $x, 'no-binding', true);
    $ch->wait_for_pending_acks_returns(WAIT);
    eq([[312, 'NO_ROUTE', $x, 'no-binding', 'lost', 'r1']], $returned, 'basic.return');
    eq(1, $acks, 'basic.ack after the return');

    // A routable mandatory publish is not returned.
    $q = $t->queue();
    $ch->queue_declare($q, auto_delete: false);
    $ch->queue_bind($q, $x, 'bound');
    $ch->basic_publish(new AMQPMessage('kept'), $x, 'bound', true);
    $ch->wait_for_pending_acks_returns(WAIT);
    eq(1, count($returned), 'returns after a routable mandatory publish');
    eq(['kept'], drain($ch, $q), 'the routable message');
});

test('large_message_1mib_round_trip', function (T $t): void {
    $c = $t->connect();
    $ch = $c->channel();
    $q = $t->queue();
    $ch->queue_declare($q, auto_delete: false);
    $body = random_bytes(1 << 20);
    $ch->confirm_select();
    $ch->basic_publish(new AMQPMessage($body), '', $q);
    $ch->wait_for_pending_acks(WAIT);

    $got = null;
    $cons = $t->channel();
    $cons->basic_consume($q, '', no_ack: true, callback: function (AMQPMessage $m) use (&$got): void {
        $got = $m;
    });
    waitFor($cons, function () use (&$got): bool {
        return $got !== null;
    }, 'the 1 MiB delivery');
    eq(1 << 20, strlen($got->getBody()), 'body size');
    ok(hash_equals(hash('sha256', $body), hash('sha256', $got->getBody())), 'the same bytes');
    eq(1 << 20, $got->getBodySize(), 'content header body size');
});

test('publish_to_missing_exchange_is_404', function (T $t): void {
    $ch = $t->channel();
    $x = $t->unique('missing');
    $ch->basic_publish(new AMQPMessage('nowhere'), $x, 'k');
    $e = raises(\PhpAmqpLib\Exception\AMQPProtocolChannelException::class, 404,
        fn() => $ch->basic_qos(0, 1, false), 'the next RPC after publishing to a missing exchange');
    eq("NOT_FOUND - no exchange '$x' in vhost '{$t->broker->vhost}'", $e->getMessage(), 'reply text');
});

test('tx_commit_and_rollback', function (T $t): void {
    $ch = $t->channel();
    $q = $t->queue();
    $ch->queue_declare($q, auto_delete: false);
    $ch->basic_publish(new AMQPMessage('pre'), '', $q);
    $ch->tx_select();
    $m = $ch->basic_get($q);
    $ch->basic_publish(new AMQPMessage('rolled-back'), '', $q);
    $ch->basic_ack($m->getDeliveryTag());
    $ch->tx_rollback();
    $probe = $t->channel();
    eq([$q, 0, 0], $probe->queue_declare($q, passive: true), 'counts after rollback (pre is unacked, nothing published)');
    $ch->basic_publish(new AMQPMessage('committed'), '', $q);
    $ch->basic_ack($m->getDeliveryTag()); // the rolled-back ack is not remembered: ack again
    $ch->tx_commit();
    eq(['committed'], drain($probe, $q), 'messages after commit (pre acked, one published)');
});
