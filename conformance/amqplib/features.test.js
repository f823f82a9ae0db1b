'use strict';
// RabbitMQ extensions an application relies on: dead-lettering with x-death, and direct
// reply-to (amq.rabbitmq.reply-to) request/response.

const assert = require('node:assert/strict');
const { brokerTest, expectChannelError } = require('./support');

// deathEntry returns the x-death entry for queue and reason, checking the common fields.
function deathEntry(m, queue, reason) {
  const deaths = m.properties.headers['x-death'];
  assert.ok(Array.isArray(deaths), `x-death missing: ${JSON.stringify(m.properties.headers)}`);
  const d = deaths.find((e) => e.queue === queue && e.reason === reason);
  assert.ok(d, `no x-death entry for ${queue}/${reason}: ${JSON.stringify(deaths)}`);
  assert.equal(d.time['!'], 'timestamp');
  assert.ok(Math.abs(d.time.value - Date.now() / 1000) < 60, `x-death time ${d.time.value} is not now`);
  return d;
}

brokerTest('dead-letter: a rejected message goes to x-dead-letter-exchange with an x-death header', async (s) => {
  const dlx = await s.exchange('fanout');
  const dlq = await s.queue({ exclusive: true });
  await s.ch.bindQueue(dlq, dlx, '');
  const q = await s.queue({ exclusive: true, deadLetterExchange: dlx });
  await s.send(q, 'doomed', { headers: { keep: 'me' }, messageId: 'dl-1' });
  const m = await s.ch.get(q, { noAck: false });
  s.ch.reject(m, false);
  await s.waitCount(dlq, 1);
  const dead = await s.ch.get(dlq, { noAck: true });
  assert.equal(dead.content.toString(), 'doomed');
  assert.equal(dead.fields.exchange, dlx);
  assert.equal(dead.fields.routingKey, q, 'the original routing key is kept');
  assert.equal(dead.properties.messageId, 'dl-1');
  assert.equal(dead.properties.headers.keep, 'me');
  const d = deathEntry(dead, q, 'rejected');
  assert.equal(d.count, 1);
  assert.equal(d.exchange, '');
  assert.deepEqual(d['routing-keys'], [q]);
  assert.equal(dead.properties.headers['x-first-death-reason'], 'rejected');
  assert.equal(dead.properties.headers['x-first-death-queue'], q);
  assert.equal(dead.properties.headers['x-first-death-exchange'], '');
  assert.equal(await s.messageCount(q), 0);
});

brokerTest('dead-letter: an expired message is dead-lettered with x-dead-letter-routing-key', async (s) => {
  const dlx = await s.exchange('direct');
  const dlq = await s.queue({ exclusive: true });
  await s.ch.bindQueue(dlq, dlx, 'expired-ones');
  const q = await s.queue({
    exclusive: true,
    messageTtl: 50,
    deadLetterExchange: dlx,
    deadLetterRoutingKey: 'expired-ones',
  });
  await s.send(q, 'too late');
  await s.waitCount(dlq, 1);
  const dead = await s.ch.get(dlq, { noAck: true });
  assert.equal(dead.content.toString(), 'too late');
  assert.equal(dead.fields.routingKey, 'expired-ones');
  const d = deathEntry(dead, q, 'expired');
  assert.equal(d.count, 1);
  assert.deepEqual(d['routing-keys'], [q]);
  assert.equal(d['original-expiration'], undefined, 'no per-message expiration was set');
  assert.equal(await s.messageCount(q), 0);
});

brokerTest('dead-letter: rejecting around a cycle counts deaths per queue and reason', async (s) => {
  const q1 = s.name('q1');
  const q2 = s.name('q2');
  await s.queue({ exclusive: true, deadLetterExchange: '', deadLetterRoutingKey: q2 }, q1);
  await s.queue({ exclusive: true, deadLetterExchange: '', deadLetterRoutingKey: q1 }, q2);
  await s.send(q1, 'ping-pong');
  for (const q of [q1, q2, q1]) {
    await s.waitCount(q, 1);
    const m = await s.ch.get(q, { noAck: false });
    s.ch.reject(m, false);
  }
  await s.waitCount(q2, 1);
  const m = await s.ch.get(q2, { noAck: true });
  const deaths = m.properties.headers['x-death'];
  assert.deepEqual(
    deaths.map((d) => [d.queue, d.reason, d.count]),
    [
      [q1, 'rejected', 2],
      [q2, 'rejected', 1],
    ],
    'the most recent death comes first; a repeated queue/reason pair is counted, not duplicated',
  );
  assert.equal(m.properties.headers['x-first-death-queue'], q1);
});

brokerTest('reply-to: direct reply-to (amq.rabbitmq.reply-to) carries an RPC round trip', async (s) => {
  const rpcQueue = await s.queue({ durable: false });
  // Server side, on its own connection: answer every request on its reply-to.
  const serverConn = await s.connect();
  const server = await s.channel(serverConn);
  const seenReplyTo = [];
  await server.consume(rpcQueue, (req) => {
    seenReplyTo.push(req.properties.replyTo);
    const n = Number(req.content.toString());
    server.sendToQueue(req.properties.replyTo, Buffer.from(String(n * n)), {
      correlationId: req.properties.correlationId,
    });
    server.ack(req);
  });
  // Client side: consume the pseudo-queue (no-ack) before publishing with it as reply-to.
  const replies = await s.consume('amq.rabbitmq.reply-to', { noAck: true });
  for (const n of [3, 4, 5]) {
    s.ch.sendToQueue(rpcQueue, Buffer.from(String(n)), { replyTo: 'amq.rabbitmq.reply-to', correlationId: `c${n}` });
  }
  const got = await replies.take(3);
  assert.deepEqual(
    got.map((m) => [m.properties.correlationId, m.content.toString()]),
    [
      ['c3', '9'],
      ['c4', '16'],
      ['c5', '25'],
    ],
  );
  for (const r of seenReplyTo) assert.match(r, /^amq\.rabbitmq\.reply-to\.[^.]+/);
  assert.equal(got[0].fields.routingKey, seenReplyTo[0]);
  await replies.quiet();
});

brokerTest('reply-to: publishing with reply-to amq.rabbitmq.reply-to without its consumer is 406', async (s) => {
  const q = await s.queue({ exclusive: true });
  await expectChannelError(s.ch, 406, /PRECONDITION_FAILED - fast reply consumer does not exist/, () => {
    s.ch.sendToQueue(q, Buffer.from('orphan'), { replyTo: 'amq.rabbitmq.reply-to' });
  });
});

brokerTest('reply-to: consuming amq.rabbitmq.reply-to with manual ack is 406', async (s) => {
  await expectChannelError(s.ch, 406, /PRECONDITION_FAILED - reply consumer cannot acknowledge/, () =>
    s.ch.consume('amq.rabbitmq.reply-to', () => {}, { noAck: false }),
  );
});
