<?php
// The php-amqp extension (AMQPConnection, AMQPChannel, AMQPExchange, AMQPQueue on rabbitmq-c):
// connect, declare, publish, get, ack, nack, consume and confirms.

declare(strict_types=1);

/** extConnect opens an extension connection to the broker under test (disconnected at test end). */
function extConnect(T $t, ?string $password = null): \AMQPConnection
{
    $b = $t->broker;
    $c = new \AMQPConnection([
        'host' => $b->host,
        'port' => $b->port,
        'login' => $b->user,
        'password' => $password ?? $b->password,
        'vhost' => $b->vhost,
        'connect_timeout' => 3,
        'read_timeout' => WAIT,
        'write_timeout' => WAIT,
        'rpc_timeout' => WAIT,
        'heartbeat' => 0,
    ]);
    $c->connect();
    $t->cleanup(function () use ($c): void {
        if ($c->isConnected()) {
            $c->disconnect();
        }
    });
    return $c;
}

/** extQueue declares a non-durable, non-auto-delete queue named after the test, deleted at test end. */
function extQueue(T $t, \AMQPChannel $ch, string $what = 'q', array $args = []): \AMQPQueue
{
    $q = new \AMQPQueue($ch);
    $q->setName($t->unique($what));
    $q->setFlags(AMQP_NOPARAM);
    $q->setArguments($args);
    $q->declareQueue();
    $name = $q->getName();
    $t->cleanup(function () use ($t, $name): void {
        $c = extConnect($t);
        $dq = new \AMQPQueue(new \AMQPChannel($c));
        $dq->setName($name);
        $dq->delete();
        $c->disconnect();
    });
    return $q;
}

/**
 * extWaitConfirms waits until the broker has acked delivery tags 1..n on ch (in confirm mode).
 * Acks may come out of order (an unroutable message is confirmed at once, a queued one once the
 * queue has it), and one ack may cover several tags (multiple).
 */
function extWaitConfirms(\AMQPChannel $ch, int $n): void
{
    $acked = [];
    $ch->setConfirmCallback(function (int $tag, bool $multiple) use (&$acked, $n): bool {
        foreach ($multiple ? range(1, $tag) : [$tag] as $tg) {
            $acked[$tg] = true;
        }
        return count($acked) < $n;
    }, function (int $tag): bool {
        fail("basic.nack for delivery tag $tag");
    });
    $ch->waitForConfirm(WAIT);
    eq($n, count($acked), 'confirmed delivery tags');
}

test('ext_connect_channel_and_disconnect', function (T $t): void {
    $c = extConnect($t);
    ok($c->isConnected(), 'a connected AMQPConnection');
    $ch = new \AMQPChannel($c);
    ok($ch->isConnected(), 'an open AMQPChannel');
    ok($ch->getChannelId() >= 1, 'a channel id');
    ok($c->getMaxFrameSize() >= 4096, 'a negotiated frame max, got ' . $c->getMaxFrameSize());
    $ch->close();
    ok(!$ch->isConnected(), 'the channel closed');
    $c->disconnect();
    ok(!$c->isConnected(), 'the connection closed');
});

test('ext_wrong_password_is_refused', function (T $t): void {
    try {
        extConnect($t, 'definitely-not-the-password');
    } catch (\AMQPConnectionException $e) {
        ok(str_contains($e->getMessage(), 'ACCESS_REFUSED'), 'an ACCESS_REFUSED error, got ' . describe($e));
        return;
    }
    fail('want AMQPConnectionException for a wrong password, got a connection');
});

test('ext_declare_publish_get_ack', function (T $t): void {
    $c = extConnect($t);
    $ch = new \AMQPChannel($c);
    $x = new \AMQPExchange($ch);
    $xname = $t->unique('x');
    $x->setName($xname);
    $x->setType(AMQP_EX_TYPE_DIRECT);
    $x->setFlags(AMQP_NOPARAM);
    $x->declareExchange();
    $t->cleanup(function () use ($t, $xname): void {
        $c = extConnect($t);
        $dx = new \AMQPExchange(new \AMQPChannel($c));
        $dx->setName($xname);
        $dx->delete();
        $c->disconnect();
    });
    $q = extQueue($t, $ch);
    $q->bind($xname, 'ext-key');

    // Counts are read after the publishes are confirmed: RabbitMQ answers queue.declare ahead of
    // publishes still in flight to the queue.
    $ch->confirmSelect();
    ok($x->publish('ext-body', 'ext-key', AMQP_NOPARAM, [
        'content_type' => 'text/plain',
        'delivery_mode' => 2,
        'correlation_id' => 'ext-corr',
        'message_id' => 'ext-id',
        'headers' => ['str' => 'v', 'num' => 7, 'flag' => true, 'nested' => ['a' => 'b']],
    ]), 'publish returns true');
    ok($x->publish('second', 'ext-key'), 'second publish');
    extWaitConfirms($ch, 2);

    $redeclared = new \AMQPQueue($ch);
    $redeclared->setName($q->getName());
    $redeclared->setFlags(AMQP_PASSIVE);
    eq(2, $redeclared->declareQueue(), 'message count from a passive declare');

    $env = $q->get(AMQP_NOPARAM);
    ok($env instanceof \AMQPEnvelope, 'an envelope from get');
    eq('ext-body', $env->getBody(), 'body');
    eq('text/plain', $env->getContentType(), 'content type');
    eq(2, $env->getDeliveryMode(), 'delivery mode');
    eq('ext-corr', $env->getCorrelationId(), 'correlation id');
    eq('ext-id', $env->getMessageId(), 'message id');
    eq($xname, $env->getExchangeName(), 'exchange');
    eq('ext-key', $env->getRoutingKey(), 'routing key');
    eq(false, $env->isRedelivery(), 'redelivered');
    $h = $env->getHeaders();
    eq(['v', 7, true, ['a' => 'b']], [$h['str'] ?? null, $h['num'] ?? null, $h['flag'] ?? null, $h['nested'] ?? null],
        'headers');
    ok($q->ack($env->getDeliveryTag()), 'ack');

    $env2 = $q->get(AMQP_NOPARAM);
    eq('second', $env2 ? $env2->getBody() : null, 'second message');
    ok($q->nack($env2->getDeliveryTag(), AMQP_REQUEUE), 'nack with requeue');
    $env3 = $q->get(AMQP_AUTOACK);
    eq(['second', true], [$env3 ? $env3->getBody() : null, $env3 ? $env3->isRedelivery() : null],
        'the requeued message, flagged redelivered');
    eq(false, $q->get(AMQP_AUTOACK), 'get on an empty queue');
});

test('ext_consume_one_message', function (T $t): void {
    $c = extConnect($t);
    $ch = new \AMQPChannel($c);
    $ch->qos(0, 1);
    $q = extQueue($t, $ch);
    $x = new \AMQPExchange($ch); // the default exchange
    $x->publish('consume-me', $q->getName());
    $x->publish('and-me-later', $q->getName());

    $got = [];
    $q->consume(function (\AMQPEnvelope $env, \AMQPQueue $queue) use (&$got): bool {
        $got[] = $env->getBody();
        $queue->ack($env->getDeliveryTag());
        return false; // stop after one message
    }, AMQP_NOPARAM, 'ext-consumer');
    eq(['consume-me'], $got, 'messages handled by the consume callback');
    $q->cancel('ext-consumer');
    // With prefetch 1 the second message may already be out with the consumer after the ack:
    // closing the channel requeues it.
    $ch->close();

    $probe = new \AMQPQueue(new \AMQPChannel($c));
    $probe->setName($q->getName());
    $probe->setFlags(AMQP_PASSIVE);
    eq(1, $probe->declareQueue(), 'messages left after one was consumed and acked');
});

test('ext_passive_declare_missing_queue_is_404', function (T $t): void {
    $c = extConnect($t);
    $ch = new \AMQPChannel($c);
    $q = new \AMQPQueue($ch);
    $q->setName($t->unique('missing'));
    $q->setFlags(AMQP_PASSIVE);
    try {
        $q->declareQueue();
    } catch (\AMQPQueueException $e) {
        eq(404, $e->getCode(), 'exception code');
        ok(str_contains($e->getMessage(), 'NOT_FOUND'), 'NOT_FOUND text, got ' . show($e->getMessage()));
        return;
    }
    fail('want AMQPQueueException 404 for a passive declare of a missing queue');
});

test('ext_publisher_confirms', function (T $t): void {
    $c = extConnect($t);
    $ch = new \AMQPChannel($c);
    $q = extQueue($t, $ch);
    $ch->confirmSelect();
    $acked = 0;
    $highest = 0;
    $ch->setConfirmCallback(function (int $tag, bool $multiple) use (&$acked, &$highest): bool {
        $acked += $multiple ? $tag - $highest : 1;
        $highest = max($highest, $tag);
        return $highest < 20; // false stops waitForConfirm
    }, function (int $tag, bool $multiple, bool $requeue): bool {
        fail("basic.nack for tag $tag");
    });
    $x = new \AMQPExchange($ch);
    for ($i = 0; $i < 20; $i++) {
        $x->publish("c$i", $q->getName());
    }
    $ch->waitForConfirm(WAIT);
    eq(20, $highest, 'highest confirmed delivery tag');
    eq(20, $acked, 'messages confirmed');
});

test('ext_headers_exchange_matches_extension_tables', function (T $t): void {
    $c = extConnect($t);
    $ch = new \AMQPChannel($c);
    $x = new \AMQPExchange($ch);
    $xname = $t->unique('hx');
    $x->setName($xname);
    $x->setType(AMQP_EX_TYPE_HEADERS);
    $x->setFlags(AMQP_AUTODELETE); // goes away with its last binding (the queue's, at cleanup)
    $x->declareExchange();
    $q = extQueue($t, $ch);
    $q->bind($xname, '', ['x-match' => 'all', 'n' => 7, 'kind' => 'report']);
    $ch->confirmSelect();
    // (php-amqp 1.11 decodes an array of integers as an empty array, so the list holds strings.)
    $x->publish('match', '', AMQP_NOPARAM, ['headers' => ['n' => 7, 'kind' => 'report', 'list' => ['a', 'b'],
        'ratio' => 1.5]]);
    $x->publish('wrong-n', '', AMQP_NOPARAM, ['headers' => ['n' => 8, 'kind' => 'report']]);
    $x->publish('missing-kind', '', AMQP_NOPARAM, ['headers' => ['n' => 7]]);
    extWaitConfirms($ch, 3);
    $bodies = [];
    while (($env = $q->get(AMQP_AUTOACK)) !== false) {
        $bodies[] = $env->getBody();
        eq(['a', 'b'], $env->getHeader('list'), 'array header');
        eq(1.5, $env->getHeader('ratio'), 'double header');
    }
    eq(['match'], $bodies, 'messages matched by {x-match: all, n: 7, kind: report}');
});

test('ext_mandatory_unroutable_is_returned', function (T $t): void {
    $c = extConnect($t);
    $ch = new \AMQPChannel($c);
    $x = new \AMQPExchange($ch); // the default exchange
    $returned = [];
    $ch->setReturnCallback(function (int $code, string $text, string $exchange, string $key,
                                     \AMQPBasicProperties $props, string $body) use (&$returned): bool {
        $returned[] = [$code, $text, $exchange, $key, $body, $props->getCorrelationId()];
        return false; // stop waiting
    });
    $nowhere = $t->unique('nowhere');
    $x->publish('bounce', $nowhere, AMQP_MANDATORY, ['correlation_id' => 'ext-r1']);
    $ch->waitForBasicReturn(WAIT);
    eq([[312, 'NO_ROUTE', '', $nowhere, 'bounce', 'ext-r1']], $returned, 'basic.return');
});
