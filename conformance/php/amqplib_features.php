<?php
// RabbitMQ extensions with php-amqplib: dead-lettering with the x-death header, and direct
// reply-to RPC through amq.rabbitmq.reply-to.

declare(strict_types=1);

use PhpAmqpLib\Exception\AMQPProtocolChannelException;
use PhpAmqpLib\Message\AMQPMessage;
use PhpAmqpLib\Wire\AMQPTable;

test('dead_letter_on_reject_records_x_death', function (T $t): void {
    $ch = $t->channel();
    $dlx = $t->exchange('dlx');
    $work = $t->queue('work');
    $dead = $t->queue('dead');
    $ch->exchange_declare($dlx, 'direct', auto_delete: false);
    $ch->queue_declare($dead, auto_delete: false);
    $ch->queue_bind($dead, $dlx, 'dead-key');
    $ch->queue_declare($work, auto_delete: false, arguments: new AMQPTable([
        'x-dead-letter-exchange' => $dlx,
        'x-dead-letter-routing-key' => 'dead-key',
    ]));
    $ch->basic_publish(new AMQPMessage('doomed', [
        'correlation_id' => 'dl-1',
        'application_headers' => new AMQPTable(['keep' => 'me']),
    ]), '', $work);

    $m = $ch->basic_get($work);
    eq('doomed', $m?->getBody(), 'the message from the work queue');
    $m->reject(false);

    $d = null;
    $deadline = microtime(true) + WAIT;
    while ($d === null && microtime(true) < $deadline) {
        $d = $ch->basic_get($dead, true);
        if ($d === null) {
            usleep(20_000);
        }
    }
    ok($d !== null, 'the rejected message in the dead-letter queue');
    eq('doomed', $d->getBody(), 'dead-lettered body');
    eq($dlx, $d->getExchange(), 'dead-lettered via the DLX');
    eq('dead-key', $d->getRoutingKey(), 'dead-letter routing key');
    eq('dl-1', $d->get('correlation_id'), 'properties kept');
    $h = $d->get('application_headers')->getNativeData();
    eq('me', $h['keep'] ?? null, 'original header kept');
    ok(isset($h['x-death']) && is_array($h['x-death']) && count($h['x-death']) === 1, 'one x-death entry, got ' .
        show($h['x-death'] ?? null));
    $death = $h['x-death'][0];
    eq($work, $death['queue'] ?? null, 'x-death queue');
    eq('rejected', $death['reason'] ?? null, 'x-death reason');
    eq(1, $death['count'] ?? null, 'x-death count');
    eq('', $death['exchange'] ?? null, 'x-death exchange (the original one)');
    eq([$work], $death['routing-keys'] ?? null, 'x-death routing-keys');
    ok(($death['time'] ?? null) instanceof \DateTimeInterface, 'x-death time is a timestamp');
    eq($work, $h['x-first-death-queue'] ?? null, 'x-first-death-queue');
    eq('rejected', $h['x-first-death-reason'] ?? null, 'x-first-death-reason');
    eq('', $h['x-first-death-exchange'] ?? null, 'x-first-death-exchange');
});

test('dead_letter_on_ttl_expiry', function (T $t): void {
    $ch = $t->channel();
    $work = $t->queue('work');
    $dead = $t->queue('dead');
    $ch->queue_declare($dead, auto_delete: false);
    // Default exchange as DLX, original routing key replaced by the dead queue's name.
    $ch->queue_declare($work, auto_delete: false, arguments: new AMQPTable([
        'x-message-ttl' => 50,
        'x-dead-letter-exchange' => '',
        'x-dead-letter-routing-key' => $dead,
    ]));
    $ch->basic_publish(new AMQPMessage('expires'), '', $work);

    $got = null;
    $cons = $t->channel();
    $cons->basic_consume($dead, '', no_ack: true, callback: function (AMQPMessage $m) use (&$got): void {
        $got = $m;
    });
    waitFor($cons, function () use (&$got): bool {
        return $got !== null;
    }, 'the expired message in the dead-letter queue');
    eq('expires', $got->getBody(), 'dead-lettered body');
    $death = $got->get('application_headers')->getNativeData()['x-death'][0] ?? [];
    eq(['expired', $work, 1], [$death['reason'] ?? null, $death['queue'] ?? null, $death['count'] ?? null],
        'x-death reason, queue and count');
    ok(!$got->has('expiration'), 'no expiration property on the dead-lettered copy');
});

test('direct_reply_to_rpc', function (T $t): void {
    // The server side: consumes requests, answers to reply_to with the correlation id.
    $server = $t->channel();
    $requests = $t->queue('requests');
    $server->queue_declare($requests, auto_delete: false);
    $seenReplyTo = [];
    $server->basic_consume($requests, '', callback: function (AMQPMessage $req) use ($server, &$seenReplyTo): void {
        $seenReplyTo[] = $req->get('reply_to');
        $server->basic_publish(new AMQPMessage(strtoupper($req->getBody()), [
            'correlation_id' => $req->get('correlation_id'),
        ]), '', $req->get('reply_to'));
        $req->ack();
    });

    // The client: consumes the pseudo-queue with no-ack before publishing.
    $client = $t->channel();
    $replies = [];
    $client->basic_consume('amq.rabbitmq.reply-to', '', no_ack: true,
        callback: function (AMQPMessage $m) use (&$replies): void {
            $replies[$m->get('correlation_id')] = [$m->getBody(), $m->getRoutingKey()];
        });
    foreach (['one', 'two'] as $body) {
        $client->basic_publish(new AMQPMessage($body, [
            'reply_to' => 'amq.rabbitmq.reply-to',
            'correlation_id' => "id-$body",
        ]), '', $requests);
    }
    $deadline = microtime(true) + WAIT;
    while (count($replies) < 2 && microtime(true) < $deadline) {
        quiet($server, 0.05);
        quiet($client, 0.05);
    }
    eq(2, count($seenReplyTo), 'requests seen by the server');
    foreach ($seenReplyTo as $rt) {
        ok(is_string($rt) && str_starts_with($rt, 'amq.rabbitmq.reply-to.'),
            'reply_to rewritten to amq.rabbitmq.reply-to.<token>, got ' . show($rt));
    }
    eq(['ONE', 'TWO'], [$replies['id-one'][0] ?? null, $replies['id-two'][0] ?? null], 'replies by correlation id');
    eq($seenReplyTo[0], $replies['id-one'][1], 'reply routing key is the rewritten reply_to');

    // Publishing with reply_to amq.rabbitmq.reply-to without consuming it first is refused.
    $lonely = $t->channel();
    $lonely->basic_publish(new AMQPMessage('x', ['reply_to' => 'amq.rabbitmq.reply-to']), '', $requests);
    $e = raises(AMQPProtocolChannelException::class, 406,
        fn() => $lonely->queue_declare($requests, passive: true), 'the next RPC after the refused publish');
    eq('PRECONDITION_FAILED - fast reply consumer does not exist', $e->getMessage(), 'reply text');
});
