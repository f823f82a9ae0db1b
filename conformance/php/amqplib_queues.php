<?php
// Queues with php-amqplib (AMQP 0-9-1 §1.7 queue class): declare (server-named, exclusive,
// durable, passive, RabbitMQ's x-message-ttl and x-max-length, argument validation, the reserved
// amq. prefix), bind/unbind, purge and delete, with RabbitMQ's reply codes and texts.

declare(strict_types=1);

use PhpAmqpLib\Exception\AMQPProtocolChannelException;
use PhpAmqpLib\Message\AMQPMessage;
use PhpAmqpLib\Wire\AMQPTable;

test('queue_declare_server_named_exclusive', function (T $t): void {
    $c = $t->connect();
    $ch = $c->channel();
    [$name, $messages, $consumers] = $ch->queue_declare('', exclusive: true);
    ok(str_starts_with($name, 'amq.gen-'), 'a server-generated name amq.gen-..., got ' . show($name));
    eq([0, 0], [$messages, $consumers], 'message and consumer counts of a new queue');
    // Counts are read after the publish is confirmed: RabbitMQ answers queue.declare ahead of
    // publishes still in flight to the queue.
    $ch->confirm_select();
    $ch->basic_publish(new AMQPMessage('to-server-named'), '', $name);
    $ch->wait_for_pending_acks(WAIT);
    [, $messages, ] = $ch->queue_declare($name, passive: true);
    eq(1, $messages, 'message count after one publish');

    // Another connection may not use an exclusive queue (§1.7.2.1: resource-locked).
    $other = $t->channel();
    $e = raises(AMQPProtocolChannelException::class, 405,
        fn() => $other->basic_get($name), 'basic.get from another connection');
    eq("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '$name' in vhost '{$t->broker->vhost}'. " .
        'It could be originally declared on another connection or the exclusive property value does not match ' .
        'that of the original declaration.', $e->getMessage(), 'reply text');

    // The queue goes away with its connection.
    $c->close();
    $probe = $t->channel();
    raises(AMQPProtocolChannelException::class, 404,
        fn() => $probe->queue_declare($name, passive: true), 'passive declare after the owner closed');
});

test('queue_declare_durable_reports_message_and_consumer_counts', function (T $t): void {
    $ch = $t->channel();
    $q = $t->queue();
    eq([$q, 0, 0], $ch->queue_declare($q, durable: true, auto_delete: false), 'queue.declare-ok of a new queue');
    $ch->confirm_select();
    for ($i = 0; $i < 3; $i++) {
        $ch->basic_publish(new AMQPMessage("m$i", ['delivery_mode' => AMQPMessage::DELIVERY_MODE_PERSISTENT]), '', $q);
    }
    $ch->wait_for_pending_acks(WAIT);
    eq([$q, 3, 0], $ch->queue_declare($q, durable: true, auto_delete: false), 'redeclare after 3 publishes');

    $cons = $t->channel();
    $cons->basic_qos(0, 1, false);
    $cons->basic_consume($q, 'php-counts', callback: function (AMQPMessage $m): void {
    });
    // One message is out with the consumer (unacked), two are ready.
    $got = [];
    $probe = $t->channel();
    waitFor($cons, function () use ($probe, $q, &$got): bool {
        $got = $probe->queue_declare($q, passive: true);
        return $got[2] === 1 && $got[1] === 2;
    }, 'counts of 2 ready messages and 1 consumer', 1.0);
    eq([$q, 2, 1], $got, 'passive declare with a consumer holding one message');
    raises(AMQPProtocolChannelException::class, 406,
        fn() => $ch->queue_declare($q, durable: false, auto_delete: false), 'redeclare as transient');
});

test('queue_declare_passive_missing_is_404', function (T $t): void {
    $ch = $t->channel();
    $missing = $t->unique('missing');
    $e = raises(AMQPProtocolChannelException::class, 404,
        fn() => $ch->queue_declare($missing, passive: true), 'passive declare of a missing queue');
    eq("NOT_FOUND - no queue '$missing' in vhost '{$t->broker->vhost}'", $e->getMessage(), 'reply text');
});

test('queue_declare_message_ttl_expires_messages', function (T $t): void {
    $ch = $t->channel();
    $q = $t->queue();
    $ch->queue_declare($q, auto_delete: false, arguments: new AMQPTable(['x-message-ttl' => 100]));
    $ch->confirm_select();
    $ch->basic_publish(new AMQPMessage('short-lived'), '', $q);
    $ch->wait_for_pending_acks(WAIT);
    [, $n, ] = $ch->queue_declare($q, passive: true);
    eq(1, $n, 'message count right after publishing');
    usleep(400_000);
    eq(null, $ch->basic_get($q, true), 'basic.get after the TTL');
    [, $n, ] = $ch->queue_declare($q, passive: true);
    eq(0, $n, 'message count after the TTL');
    raises(AMQPProtocolChannelException::class, 406,
        fn() => $ch->queue_declare($q, auto_delete: false, arguments: new AMQPTable(['x-message-ttl' => 200])),
        'redeclare with another x-message-ttl');
});

test('queue_declare_max_length_drops_oldest', function (T $t): void {
    $ch = $t->channel();
    $q = $t->queue();
    $ch->queue_declare($q, auto_delete: false, arguments: new AMQPTable(['x-max-length' => 2]));
    $ch->confirm_select();
    foreach (['one', 'two', 'three'] as $body) {
        $ch->basic_publish(new AMQPMessage($body), '', $q);
    }
    $ch->wait_for_pending_acks(WAIT);
    eq([$q, 2, 0], $ch->queue_declare($q, passive: true), 'passive declare of a full queue');
    eq(['two', 'three'], drain($ch, $q), 'messages kept (drop-head)');
});

test('queue_bind_and_unbind', function (T $t): void {
    $ch = $t->channel();
    $x = $t->exchange();
    $q = $t->queue();
    $ch->exchange_declare($x, 'direct', auto_delete: false);
    $ch->queue_declare($q, auto_delete: false);
    $ch->queue_bind($q, $x, 'red');
    $ch->queue_bind($q, $x, 'green');
    foreach (['red', 'green', 'blue'] as $key) {
        $ch->basic_publish(new AMQPMessage($key), $x, $key);
    }
    eq(['red', 'green'], drain($ch, $q), 'messages routed by two bindings');
    $ch->queue_unbind($q, $x, 'red');
    foreach (['red', 'green'] as $key) {
        $ch->basic_publish(new AMQPMessage($key), $x, $key);
    }
    eq(['green'], drain($ch, $q), 'messages routed after unbinding red');
    raises(AMQPProtocolChannelException::class, 404,
        fn() => $ch->queue_bind($q, $t->unique('no-exchange'), 'k'), 'bind to a missing exchange');
});

test('queue_purge_and_delete_report_counts', function (T $t): void {
    $ch = $t->channel();
    $q = $t->queue();
    $ch->queue_declare($q, auto_delete: false);
    $ch->confirm_select();
    for ($i = 0; $i < 5; $i++) {
        $ch->basic_publish(new AMQPMessage("m$i"), '', $q);
    }
    $ch->wait_for_pending_acks(WAIT);
    eq(5, $ch->queue_purge($q), 'queue.purge-ok message count');
    eq(0, $ch->queue_purge($q), 'second purge count');
    for ($i = 0; $i < 3; $i++) {
        $ch->basic_publish(new AMQPMessage("n$i"), '', $q);
    }
    $ch->wait_for_pending_acks(WAIT);
    $e = raises(AMQPProtocolChannelException::class, 406,
        fn() => $ch->queue_delete($q, if_empty: true), 'delete if-empty of a non-empty queue');
    eq("PRECONDITION_FAILED - queue '$q' in vhost '{$t->broker->vhost}' not empty", $e->getMessage(), 'reply text');
    $ch = $t->channel();
    eq(3, $ch->queue_delete($q), 'queue.delete-ok message count');
    raises(AMQPProtocolChannelException::class, 404,
        fn() => $ch->queue_declare($q, passive: true), 'passive declare after delete');
});

test('queue_declare_reserved_amq_prefix_is_403', function (T $t): void {
    $c = $t->connect();
    $ch = $c->channel();
    [$name, , ] = $ch->queue_declare('', exclusive: true);
    // Only a passive declare may name an amq.* queue, even the server-named queue of this very
    // connection: RabbitMQ checks the prefix before looking the queue up.
    eq([$name, 0, 0], $ch->queue_declare($name, passive: true), 'passive declare of the server-named queue');
    $e = raises(AMQPProtocolChannelException::class, 403,
        fn() => $ch->queue_declare($name, exclusive: true), 'non-passive redeclare of the server-named queue');
    eq("ACCESS_REFUSED - queue name '$name' contains reserved prefix 'amq.*'", $e->getMessage(), 'reply text');
    $ch = $c->channel();
    $fresh = 'amq.' . $t->unique('fresh');
    $e = raises(AMQPProtocolChannelException::class, 403,
        fn() => $ch->queue_declare($fresh, auto_delete: false), 'declare of a new amq.* queue');
    eq("ACCESS_REFUSED - queue name '$fresh' contains reserved prefix 'amq.*'", $e->getMessage(), 'reply text');
});

test('queue_bind_reports_missing_exchange_before_queue', function (T $t): void {
    $vh = $t->broker->vhost;
    $noX = $t->unique('no-x');
    $ch = $t->channel();
    $e = raises(AMQPProtocolChannelException::class, 404,
        fn() => $ch->queue_bind($t->unique('no-q'), $noX, 'k'), 'bind a missing queue to a missing exchange');
    eq("NOT_FOUND - no exchange '$noX' in vhost '$vh'", $e->getMessage(), 'reply text');
});

test('queue_bind_exclusive_queue_to_missing_exchange_is_404', function (T $t): void {
    // The exchange is looked up before the exclusive-queue check (405 RESOURCE_LOCKED).
    $vh = $t->broker->vhost;
    $noX = $t->unique('no-x');
    $owner = $t->channel();
    [$locked, , ] = $owner->queue_declare('', exclusive: true);
    $ch = $t->channel();
    $e = raises(AMQPProtocolChannelException::class, 404,
        fn() => $ch->queue_bind($locked, $noX, 'k'), "bind another connection's exclusive queue to a missing exchange");
    eq("NOT_FOUND - no exchange '$noX' in vhost '$vh'", $e->getMessage(), 'reply text');
});

test('queue_declare_invalid_argument_reply_texts', function (T $t): void {
    $vh = $t->broker->vhost;
    $q = $t->queue();
    $cases = [
        ['x-message-ttl', -1, '{value_negative,-1}'],
        ['x-expires', 0, '{value_zero,0}'],
        ['x-max-length', -1, '{value_negative,-1}'],
        ['x-message-ttl', '5', '"expected integer, got longstr"'],
        ['x-max-length', 'ten', '"expected integer, got longstr"'],
        ['x-overflow', 'sideways', 'invalid_overflow'],
        ['x-max-priority', 300, '{max_value_exceeded,300}'],
        ['x-queue-type', 'nope', '"unsupported queue type \'nope\'"'],
    ];
    $problems = [];
    foreach ($cases as [$arg, $value, $detail]) {
        $ch = $t->channel();
        try {
            $ch->queue_declare($q, auto_delete: false, arguments: new AMQPTable([$arg => $value]));
            $problems[] = "$arg=" . show($value) . ': declared, want 406';
            continue;
        } catch (AMQPProtocolChannelException $e) {
            $want = "PRECONDITION_FAILED - invalid arg '$arg' for queue '$q' in vhost '$vh': $detail";
            if ($e->getCode() !== 406 || $e->getMessage() !== $want) {
                $problems[] = sprintf('%s=%s: want 406 %s, got %d %s', $arg, show($value), show($want),
                    $e->getCode(), show($e->getMessage()));
            }
        }
    }
    $ch = $t->channel();
    try {
        $ch->queue_declare($q, auto_delete: false, arguments: new AMQPTable(['x-dead-letter-exchange' => 5]));
        $problems[] = 'x-dead-letter-exchange=5: declared, want 406';
    } catch (AMQPProtocolChannelException $e) {
        $want = "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue '$q' " .
            "in vhost '$vh'";
        if ($e->getCode() !== 406 || $e->getMessage() !== $want) {
            $problems[] = sprintf('x-dead-letter-exchange=5: want 406 %s, got %d %s', show($want), $e->getCode(),
                show($e->getMessage()));
        }
    }
    if ($problems) {
        fail(implode("\n    ", $problems));
    }
});

test('long_reply_text_is_truncated_with_ellipsis', function (T $t): void {
    $ch = $t->channel();
    $name = str_repeat('n', 250); // the 404 text would be 285 bytes; a short string holds 255
    $e = raises(AMQPProtocolChannelException::class, 404,
        fn() => $ch->queue_declare($name, passive: true), 'passive declare of a missing 250-byte name');
    $full = "NOT_FOUND - no queue '$name' in vhost '{$t->broker->vhost}'";
    eq(substr($full, 0, 252) . '...', $e->getMessage(), 'reply text cut to 252 bytes plus "..."');
});
