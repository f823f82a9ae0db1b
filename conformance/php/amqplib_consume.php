<?php
// Consuming with php-amqplib: basic.consume/deliver/cancel (AMQP 0-9-1 §1.8.3.3-5), basic.qos
// prefetch (§1.8.3.1), ack/nack/reject with and without requeue (§1.8.3.13-14, RabbitMQ's
// basic.nack), and acknowledging an unknown delivery tag (§1.8.3.13: precondition-failed).

declare(strict_types=1);

use PhpAmqpLib\Exception\AMQPProtocolChannelException;
use PhpAmqpLib\Message\AMQPMessage;

test('basic_consume_delivers_in_order_to_callback', function (T $t): void {
    $ch = $t->channel();
    $q = $t->queue();
    $ch->queue_declare($q, auto_delete: false);
    for ($i = 0; $i < 10; $i++) {
        $ch->basic_publish(new AMQPMessage("m$i"), '', $q);
    }
    $got = [];
    $tags = [];
    $ctag = $ch->basic_consume($q, 'php-consumer-tag', callback: function (AMQPMessage $m) use (&$got, &$tags): void {
        $got[] = $m->getBody();
        $tags[] = [$m->getConsumerTag(), $m->getDeliveryTag(), $m->getRoutingKey(), $m->isRedelivered()];
        $m->ack();
    });
    eq('php-consumer-tag', $ctag, 'basic.consume-ok consumer tag');
    waitFor($ch, function () use (&$got): bool {
        return count($got) >= 10;
    }, '10 deliveries');
    eq(array_map(fn($i) => "m$i", range(0, 9)), $got, 'deliveries in publish order');
    eq(['php-consumer-tag', 1, $q, false], $tags[0], 'first basic.deliver fields');
    eq(10, $tags[9][1], 'delivery tag of the tenth delivery');

    // After basic.cancel nothing more is delivered to this consumer.
    $ch->basic_cancel($ctag);
    ok(!$ch->is_consuming(), 'no consumer left after basic.cancel-ok');
    $ch->basic_publish(new AMQPMessage('after-cancel'), '', $q);
    quiet($ch);
    eq(10, count($got), 'deliveries after cancel');
    eq(['after-cancel'], drain($ch, $q), 'the message published after cancel stays queued');
});

test('basic_consume_server_generated_tag_and_exclusive', function (T $t): void {
    $ch = $t->channel();
    $q = $t->queue();
    $ch->queue_declare($q, auto_delete: false);
    $ctag = $ch->basic_consume($q, '', exclusive: true, callback: function (AMQPMessage $m): void {
    });
    ok(str_starts_with($ctag, 'amq.ctag-'), 'a server-generated consumer tag amq.ctag-..., got ' . show($ctag));
    $other = $t->channel();
    $e = raises(AMQPProtocolChannelException::class, 403,
        fn() => $other->basic_consume($q, '', callback: fn() => null), 'second consumer on an exclusive consumer');
    eq("ACCESS_REFUSED - queue '$q' in vhost '{$t->broker->vhost}' in exclusive use", $e->getMessage(), 'reply text');
});

test('basic_qos_prefetch_limits_unacked_deliveries', function (T $t): void {
    $ch = $t->channel();
    $q = $t->queue();
    $ch->queue_declare($q, auto_delete: false);
    for ($i = 0; $i < 6; $i++) {
        $ch->basic_publish(new AMQPMessage("p$i"), '', $q);
    }
    $ch->basic_qos(0, 2, false);
    /** @var AMQPMessage[] $held */
    $held = [];
    $ch->basic_consume($q, '', callback: function (AMQPMessage $m) use (&$held): void {
        $held[] = $m;
    });
    waitFor($ch, function () use (&$held): bool {
        return count($held) >= 2;
    }, 'the first 2 deliveries');
    quiet($ch);
    eq(2, count($held), 'deliveries with prefetch 2 and nothing acked');

    $held[0]->ack();
    waitFor($ch, function () use (&$held): bool {
        return count($held) >= 3;
    }, 'a third delivery after one ack');
    quiet($ch);
    eq(3, count($held), 'deliveries after one ack');
    eq('p2', $held[2]->getBody(), 'the next message in order');

    // multiple=true acks everything up to the tag and frees two more slots.
    $held[2]->ack(true);
    waitFor($ch, function () use (&$held): bool {
        return count($held) >= 5;
    }, 'two more deliveries after a multiple ack');
    quiet($ch);
    eq(['p0', 'p1', 'p2', 'p3', 'p4'], array_map(fn($m) => $m->getBody(), $held), 'delivered bodies');
});

test('basic_nack_and_reject_requeue_sets_redelivered', function (T $t): void {
    $ch = $t->channel();
    $q = $t->queue();
    $ch->queue_declare($q, auto_delete: false);
    $ch->basic_publish(new AMQPMessage('a'), '', $q);
    $ch->basic_publish(new AMQPMessage('b'), '', $q);

    $m = $ch->basic_get($q);
    eq(['a', false], [$m->getBody(), $m->isRedelivered()], 'first get');
    $m->nack(true); // requeue: back at the head, flagged redelivered
    $m = $ch->basic_get($q);
    eq(['a', true], [$m->getBody(), $m->isRedelivered()], 'get after nack requeue=true');
    $m->reject(true);
    $m = $ch->basic_get($q);
    eq(['a', true], [$m->getBody(), $m->isRedelivered()], 'get after reject requeue=true');

    $m->reject(false); // dropped (no dead-letter exchange)
    $m = $ch->basic_get($q);
    eq(['b', false], [$m->getBody(), $m->isRedelivered()], 'get after reject requeue=false');
    $m->nack(false);
    eq(null, $ch->basic_get($q), 'the queue after nack requeue=false');
});

test('basic_nack_multiple_requeues_all_up_to_tag', function (T $t): void {
    $ch = $t->channel();
    $q = $t->queue();
    $ch->queue_declare($q, auto_delete: false);
    foreach (['x', 'y', 'z'] as $b) {
        $ch->basic_publish(new AMQPMessage($b), '', $q);
    }
    $ms = [$ch->basic_get($q), $ch->basic_get($q), $ch->basic_get($q)];
    eq(['x', 'y', 'z'], array_map(fn($m) => $m->getBody(), $ms), 'three gets');
    $ch->basic_nack($ms[1]->getDeliveryTag(), true, true); // x and y back, z still unacked
    $again = [];
    while (($m = $ch->basic_get($q, true)) !== null) {
        $again[] = [$m->getBody(), $m->isRedelivered()];
    }
    eq([['x', true], ['y', true]], $again, 'requeued by nack multiple=true');
    $ms[2]->ack();
});

test('basic_ack_unknown_delivery_tag_is_406', function (T $t): void {
    $ch = $t->channel();
    $q = $t->queue();
    $ch->queue_declare($q, auto_delete: false);
    $ch->basic_ack(999);
    // basic.ack has no reply; the channel.close arrives before the next synchronous reply.
    $e = raises(AMQPProtocolChannelException::class, 406,
        fn() => $ch->queue_declare($q, passive: true), 'the next RPC after acking tag 999');
    eq('PRECONDITION_FAILED - unknown delivery tag 999', $e->getMessage(), 'reply text');
    ok(!$ch->is_open(), 'the channel closed');

    // Acking a tag twice is the same error.
    $ch = $t->channel();
    $ch->basic_publish(new AMQPMessage('once'), '', $q);
    $m = $ch->basic_get($q);
    $m->ack();
    $ch->basic_ack($m->getDeliveryTag());
    raises(AMQPProtocolChannelException::class, 406,
        fn() => $ch->queue_declare($q, passive: true), 'the next RPC after a double ack');
});

test('consumer_cancelled_by_server_when_queue_deleted', function (T $t): void {
    $ch = $t->channel();
    $q = $t->queue();
    $ch->queue_declare($q, auto_delete: false);
    $ctag = $ch->basic_consume($q, 'php-doomed-consumer', callback: fn() => null);
    $t->channel()->queue_delete($q);
    // RabbitMQ sends basic.cancel (consumer_cancel_notify); php-amqplib raises it from wait().
    $e = null;
    try {
        waitFor($ch, fn(): bool => false, 'the server-sent basic.cancel');
    } catch (\PhpAmqpLib\Exception\AMQPBasicCancelException $e) {
    }
    ok($e !== null, 'AMQPBasicCancelException from wait()');
    eq($ctag, $e->consumerTag, 'consumer tag of the server-sent basic.cancel');
    ok($ch->is_open(), 'the channel stays open');
});

test('basic_recover_requeue_redelivers_unacked', function (T $t): void {
    $ch = $t->channel();
    $q = $t->queue();
    $ch->queue_declare($q, auto_delete: false);
    $ch->basic_publish(new AMQPMessage('recover-me'), '', $q);
    $got = [];
    $ch->basic_consume($q, '', callback: function (AMQPMessage $m) use (&$got): void {
        $got[] = [$m->getBody(), $m->isRedelivered(), $m->getDeliveryTag()];
    });
    waitFor($ch, function () use (&$got): bool {
        return count($got) >= 1;
    }, 'the first delivery');
    $ch->basic_recover(true);
    waitFor($ch, function () use (&$got): bool {
        return count($got) >= 2;
    }, 'the redelivery after basic.recover');
    eq([['recover-me', false, 1], ['recover-me', true, 2]], $got, 'deliveries before and after basic.recover');
    $ch->basic_ack(2);
    quiet($ch);
    eq(2, count($got), 'deliveries after the ack');
});
