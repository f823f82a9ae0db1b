<?php
// Exchange declaration and routing with php-amqplib (AMQP 0-9-1 §1.6 exchange class, §3.1.3
// exchange types; headers matching as RabbitMQ does it).

declare(strict_types=1);

use PhpAmqpLib\Exception\AMQPConnectionClosedException;
use PhpAmqpLib\Exception\AMQPProtocolChannelException;
use PhpAmqpLib\Message\AMQPMessage;
use PhpAmqpLib\Wire\AMQPTable;

test('exchange_declare_each_type_and_passive', function (T $t): void {
    $ch = $t->channel();
    foreach (['direct', 'fanout', 'topic', 'headers'] as $type) {
        $x = $t->exchange($type);
        eq(null, $ch->exchange_declare($x, $type, auto_delete: false), "exchange.declare-ok for $type");
        // Redeclaring with the same type and flags is a no-op; passive only checks existence.
        $ch->exchange_declare($x, $type, auto_delete: false);
        $ch->exchange_declare($x, $type, passive: true);
    }
    $durable = $t->exchange('durable');
    $ch->exchange_declare($durable, 'direct', durable: true, auto_delete: false);
    $ch->exchange_declare($durable, 'direct', durable: true, auto_delete: false);
    ok($ch->is_open(), 'the channel still open after equivalent redeclares');
});

test('exchange_redeclare_with_other_type_is_406', function (T $t): void {
    $ch = $t->channel();
    $x = $t->exchange();
    $ch->exchange_declare($x, 'direct', auto_delete: false);
    $vh = $t->broker->vhost;
    $e = raises(AMQPProtocolChannelException::class, 406,
        fn() => $ch->exchange_declare($x, 'fanout', auto_delete: false), 'redeclare direct as fanout');
    eq("PRECONDITION_FAILED - inequivalent arg 'type' for exchange '$x' in vhost '$vh': " .
        "received 'fanout' but current is 'direct'", $e->getMessage(), 'reply text');
    ok(!$ch->is_open(), 'the channel closed');
    $ch2 = $t->channel();
    $e = raises(AMQPProtocolChannelException::class, 406,
        fn() => $ch2->exchange_declare($x, 'direct', durable: true, auto_delete: false), 'redeclare as durable');
    eq("PRECONDITION_FAILED - inequivalent arg 'durable' for exchange '$x' in vhost '$vh': " .
        "received 'true' but current is 'false'", $e->getMessage(), 'reply text');
});

test('exchange_declare_passive_missing_is_404', function (T $t): void {
    $ch = $t->channel();
    $e = raises(AMQPProtocolChannelException::class, 404,
        fn() => $ch->exchange_declare($t->unique('missing'), 'direct', passive: true), 'passive declare');
    ok(str_starts_with($e->getMessage(), 'NOT_FOUND - no exchange'), 'NOT_FOUND text, got ' .
        show($e->getMessage()));
});

test('exchange_declare_unknown_type_is_503', function (T $t): void {
    $ch = $t->channel();
    // An unknown type is a connection error (command-invalid) in RabbitMQ.
    $e = raises(AMQPConnectionClosedException::class, 503,
        fn() => $ch->exchange_declare($t->unique('bogus'), 'no-such-type', auto_delete: false),
        'declare with an unknown type');
    // php-amqplib appends the failing class and method ids to the reply text.
    eq("COMMAND_INVALID - unknown exchange type 'no-such-type'(40, 10)", $e->getMessage(), 'reply text');
});

test('topic_routing_with_wildcards', function (T $t): void {
    $ch = $t->channel();
    $x = $t->exchange();
    $ch->exchange_declare($x, 'topic', auto_delete: false);
    $patterns = ['star' => 'stock.*.nyse', 'hash' => 'stock.#', 'tail' => '#.eur', 'exact' => 'stock.ibm.nyse'];
    $queues = [];
    foreach ($patterns as $k => $pattern) {
        $queues[$k] = $t->queue($k);
        $ch->queue_declare($queues[$k], auto_delete: false);
        $ch->queue_bind($queues[$k], $x, $pattern);
    }
    foreach (['stock.ibm.nyse', 'stock.usd', 'stock', 'bond.x.eur', 'stock.a.b.eur', 'other'] as $key) {
        $ch->basic_publish(new AMQPMessage($key), $x, $key);
    }
    $want = [
        'star' => ['stock.ibm.nyse'],
        'hash' => ['stock.ibm.nyse', 'stock.usd', 'stock', 'stock.a.b.eur'],
        'tail' => ['bond.x.eur', 'stock.a.b.eur'],
        'exact' => ['stock.ibm.nyse'],
    ];
    foreach ($want as $k => $bodies) {
        eq($bodies, drain($ch, $queues[$k]), "messages routed to '{$patterns[$k]}'");
    }
});

test('headers_routing_all_and_any', function (T $t): void {
    $ch = $t->channel();
    $x = $t->exchange();
    $ch->exchange_declare($x, 'headers', auto_delete: false);
    $all = $t->queue('all');
    $any = $t->queue('any');
    $ch->queue_declare($all, auto_delete: false);
    $ch->queue_declare($any, auto_delete: false);
    $ch->queue_bind($all, $x, '', arguments: new AMQPTable(['x-match' => 'all', 'format' => 'pdf', 'type' => 'report']));
    $ch->queue_bind($any, $x, '', arguments: new AMQPTable(['x-match' => 'any', 'format' => 'pdf', 'type' => 'log']));
    $send = [
        'both' => ['format' => 'pdf', 'type' => 'report'],
        'format-only' => ['format' => 'pdf'],
        'log' => ['format' => 'zip', 'type' => 'log'],
        'none' => ['format' => 'zip'],
    ];
    foreach ($send as $body => $headers) {
        $ch->basic_publish(new AMQPMessage($body, ['application_headers' => new AMQPTable($headers)]), $x, 'ignored');
    }
    eq(['both'], drain($ch, $all), 'x-match=all matches');
    eq(['both', 'format-only', 'log'], drain($ch, $any), 'x-match=any matches');
});

test('exchange_to_exchange_binding_routes', function (T $t): void {
    $ch = $t->channel();
    $src = $t->exchange('src');
    $dst = $t->exchange('dst');
    $ch->exchange_declare($src, 'fanout', auto_delete: false);
    $ch->exchange_declare($dst, 'direct', auto_delete: false);
    $ch->exchange_bind($dst, $src, '');
    $q = $t->queue();
    $ch->queue_declare($q, auto_delete: false);
    $ch->queue_bind($q, $dst, 'k');
    $ch->basic_publish(new AMQPMessage('via-e2e'), $src, 'k');
    $ch->basic_publish(new AMQPMessage('wrong-key'), $src, 'other');
    eq(['via-e2e'], drain($ch, $q), 'messages routed through the exchange binding');
    $ch->exchange_unbind($dst, $src, '');
    $ch->basic_publish(new AMQPMessage('after-unbind'), $src, 'k');
    eq([], drain($ch, $q), 'messages after exchange.unbind');
});

test('headers_match_compares_values_not_integer_widths', function (T $t): void {
    $ch = $t->channel();
    $x = $t->exchange();
    $ch->exchange_declare($x, 'headers', auto_delete: false);
    $q = $t->queue();
    $ch->queue_declare($q, auto_delete: false);
    $ch->queue_bind($q, $x, '', arguments: new AMQPTable(['x-match' => 'all', 'n' => 42, 'flag' => true]));
    $send = function (string $body, AMQPTable $h) use ($ch, $x): void {
        $ch->basic_publish(new AMQPMessage($body, ['application_headers' => $h]), $x, '');
    };
    $wide = new AMQPTable(['flag' => true]);
    $wide->set('n', 42, AMQPTable::T_INT_LONGLONG);
    $send('longlong-42', $wide);
    $short = new AMQPTable(['flag' => true]);
    $short->set('n', 42, AMQPTable::T_INT_SHORT);
    $send('short-42', $short);
    $send('string-42', new AMQPTable(['n' => '42', 'flag' => true]));
    $send('int-43', new AMQPTable(['n' => 43, 'flag' => true]));
    $send('flag-false', new AMQPTable(['n' => 42, 'flag' => false]));
    $send('exact', new AMQPTable(['n' => 42, 'flag' => true, 'extra' => 'ignored']));
    eq(['longlong-42', 'short-42', 'exact'], drain($ch, $q), 'messages matched by {n: 42, flag: true}');
});

test('exchange_redeclare_with_other_alternate_exchange_is_406', function (T $t): void {
    $ch = $t->channel();
    $x = $t->short('x', 'ae-source');
    $ae = 'php.ae.' . getmypid();
    $ch->exchange_declare($x, 'direct', auto_delete: false, arguments: new AMQPTable(['alternate-exchange' => $ae]));
    $ch->exchange_declare($x, 'direct', auto_delete: false, arguments: new AMQPTable(['alternate-exchange' => $ae]));
    $e = raises(AMQPProtocolChannelException::class, 406,
        fn() => $ch->exchange_declare($x, 'direct', auto_delete: false,
            arguments: new AMQPTable(['alternate-exchange' => 'other'])),
        'redeclare with another alternate-exchange');
    eq("PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '$x' in vhost " .
        "'{$t->broker->vhost}': received 'other' but current is '$ae'", $e->getMessage(), 'reply text');
});
