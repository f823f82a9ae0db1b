'use strict';
// Consuming and acknowledging: basic.consume/cancel/get, ack/nack/reject, qos, recover
// (AMQP 0-9-1 §1.8.3 basic class; RabbitMQ's basic.nack and consumer cancel notifications).

const assert = require('node:assert/strict');
const { brokerTest, expectChannelError, WAIT } = require('./support');

const bodies = (ms) => ms.map((m) => m.content.toString());

brokerTest('consume: manual ack delivers in order with rising delivery tags; acked messages are gone', async (s) => {
  const q = await s.queue({ exclusive: true });
  for (let i = 0; i < 5; i++) await s.send(q, `m${i}`);
  const inbox = await s.consume(q, { noAck: false });
  assert.match(inbox.consumerTag, /^amq\.ctag-/);
  const ms = await inbox.take(5);
  assert.deepEqual(bodies(ms), ['m0', 'm1', 'm2', 'm3', 'm4']);
  assert.deepEqual(
    ms.map((m) => m.fields.deliveryTag),
    [1, 2, 3, 4, 5],
  );
  for (const m of ms) {
    assert.equal(m.fields.consumerTag, inbox.consumerTag);
    assert.equal(m.fields.redelivered, false);
    s.ch.ack(m);
  }
  await s.ch.close();
  const ch = await s.channel();
  assert.equal(await s.messageCount(q, ch), 0, 'acked messages must not come back');
});

brokerTest('consume: noAck deliveries are settled at once and not requeued on close', async (s) => {
  const q = await s.queue({ durable: false });
  for (let i = 0; i < 3; i++) await s.send(q, `m${i}`);
  const ch = await s.channel();
  const inbox = await s.consume(q, { noAck: true, consumerTag: 'amqplib-noack' }, ch);
  assert.equal(inbox.consumerTag, 'amqplib-noack');
  assert.deepEqual(bodies(await inbox.take(3)), ['m0', 'm1', 'm2']);
  await ch.close();
  assert.equal(await s.messageCount(q), 0);
});

brokerTest('consume: unacked messages are requeued with redelivered=true when the channel closes', async (s) => {
  const q = await s.queue({ durable: false });
  for (let i = 0; i < 3; i++) await s.send(q, `m${i}`);
  const ch = await s.channel();
  const inbox = await s.consume(q, { noAck: false }, ch);
  const ms = await inbox.take(3);
  ch.ack(ms[1]);
  await ch.close();
  await s.waitCount(q, 2);
  const again = await s.ch.get(q, { noAck: true });
  assert.equal(again.content.toString(), 'm0');
  assert.equal(again.fields.redelivered, true);
  const last = await s.ch.get(q, { noAck: true });
  assert.equal(last.content.toString(), 'm2');
  assert.equal(last.fields.redelivered, true);
});

brokerTest('ack: nack with requeue=true redelivers, requeue=false discards', async (s) => {
  const q = await s.queue({ exclusive: true });
  await s.send(q, 'once');
  const first = await s.ch.get(q, { noAck: false });
  assert.equal(first.fields.redelivered, false);
  s.ch.nack(first, false, true);
  const second = await s.ch.get(q, { noAck: false });
  assert.ok(second, 'requeued message expected');
  assert.equal(second.content.toString(), 'once');
  assert.equal(second.fields.redelivered, true);
  s.ch.nack(second, false, false);
  assert.equal(await s.ch.get(q), false);
  await s.waitCount(q, 0);
});

brokerTest('ack: reject with requeue=true puts the message back at the head', async (s) => {
  const q = await s.queue({ exclusive: true });
  for (const b of ['a', 'b', 'c']) await s.send(q, b);
  const a = await s.ch.get(q, { noAck: false });
  s.ch.reject(a, true);
  const again = await s.ch.get(q, { noAck: false });
  assert.equal(again.content.toString(), 'a');
  assert.equal(again.fields.redelivered, true);
  s.ch.reject(again, false);
  assert.deepEqual(await s.getAll(q), ['b', 'c']);
});

brokerTest('ack: multiple=true acks every tag up to the given one; ackAll and nackAll', async (s) => {
  const q = await s.queue({ durable: false });
  for (let i = 0; i < 6; i++) await s.send(q, `m${i}`);
  const ch = await s.channel();
  const inbox = await s.consume(q, { noAck: false }, ch);
  const ms = await inbox.take(6);
  ch.ack(ms[2], true); // m0..m2
  ch.nack(ms[3], false, false); // m3 dropped
  ch.nackAll(true); // m4, m5 requeued ...
  const back = await inbox.take(2); // ... and redelivered to this consumer
  assert.deepEqual(bodies(back), ['m4', 'm5']);
  assert.ok(back.every((m) => m.fields.redelivered));
  ch.ackAll();
  await ch.close();
  assert.equal(await s.messageCount(q), 0);
});

brokerTest('ack: an unknown delivery tag is 406 PRECONDITION_FAILED and closes the channel', async (s) => {
  const q = await s.queue({ exclusive: true });
  await s.send(q, 'kept');
  const ch = await s.channel();
  const m = await ch.get(q, { noAck: false });
  assert.equal(m.fields.deliveryTag, 1);
  await expectChannelError(ch, 406, /PRECONDITION_FAILED - unknown delivery tag 99/, () => {
    ch.ack({ fields: { deliveryTag: 99 } });
  });
  // The channel's unacked message went back to the queue.
  await s.waitCount(q, 1);
});

brokerTest('ack: acking the same delivery twice is 406 PRECONDITION_FAILED', async (s) => {
  const q = await s.queue({ exclusive: true });
  await s.send(q, 'x');
  const m = await s.ch.get(q, { noAck: false });
  await expectChannelError(s.ch, 406, /PRECONDITION_FAILED - unknown delivery tag 1/, () => {
    s.ch.ack(m);
    s.ch.ack(m);
  });
  const ch = await s.channel();
  assert.equal(await s.messageCount(q, ch), 0, 'the first ack counted');
});

brokerTest('qos: a consumer with prefetch 2 holds at most 2 unacked messages', async (s) => {
  const q = await s.queue({ exclusive: true });
  for (let i = 0; i < 5; i++) await s.send(q, `m${i}`);
  await s.ch.prefetch(2);
  const inbox = await s.consume(q, { noAck: false });
  const firstTwo = await inbox.take(2);
  assert.deepEqual(bodies(firstTwo), ['m0', 'm1']);
  await inbox.quiet();
  assert.equal(await s.messageCount(q), 3);
  s.ch.ack(firstTwo[0]);
  const third = await inbox.next();
  assert.equal(third.content.toString(), 'm2');
  await inbox.quiet();
  s.ch.ack(firstTwo[1]);
  s.ch.ack(third);
  assert.deepEqual(bodies(await inbox.take(2)), ['m3', 'm4']);
});

brokerTest('get: basic.get returns the message with the remaining count, false when empty', async (s) => {
  const q = await s.queue({ exclusive: true });
  assert.equal(await s.ch.get(q), false);
  for (const b of ['a', 'b', 'c']) await s.send(q, b);
  const m = await s.ch.get(q, { noAck: false });
  assert.equal(m.content.toString(), 'a');
  assert.equal(m.fields.messageCount, 2);
  assert.equal(m.fields.redelivered, false);
  assert.equal(m.fields.routingKey, q);
  s.ch.ack(m);
  const n = await s.ch.get(q, { noAck: true });
  assert.equal(n.fields.messageCount, 1);
  await s.ch.get(q, { noAck: true });
  assert.equal(await s.ch.get(q, { noAck: true }), false);
});

brokerTest('consume: cancel stops deliveries and leaves later messages in the queue', async (s) => {
  const q = await s.queue({ exclusive: true });
  const inbox = await s.consume(q, { noAck: true });
  await s.send(q, 'before');
  assert.equal((await inbox.next()).content.toString(), 'before');
  assert.deepEqual(await s.ch.cancel(inbox.consumerTag), { consumerTag: inbox.consumerTag });
  await s.send(q, 'after');
  await inbox.quiet();
  assert.equal(await s.messageCount(q), 1);
  assert.equal((await s.ch.checkQueue(q)).consumerCount, 0);
});

brokerTest('consume: deleting the queue cancels its consumer (basic.cancel from the server)', async (s) => {
  const q = await s.queue({ durable: false });
  const inbox = await s.consume(q);
  const other = await s.channel();
  await other.deleteQueue(q);
  const m = await inbox.next(WAIT, 'the server cancel');
  assert.equal(m, null, 'amqplib reports a server cancel as a null message');
  assert.deepEqual(s.ch.errors, []);
});

brokerTest('consume: an exclusive consumer locks out other consumers with 403 ACCESS_REFUSED', async (s) => {
  const q = await s.queue({ exclusive: false, durable: false });
  await s.ch.consume(q, () => {}, { exclusive: true });
  const ch = await s.channel();
  await expectChannelError(ch, 403, /ACCESS_REFUSED - queue '.*' in vhost '\/' in exclusive use/, () => ch.consume(q, () => {}));
});

brokerTest('consume: two consumers share a queue round robin', async (s) => {
  const q = await s.queue({ exclusive: true });
  const other = await s.channel();
  const a = await s.consume(q, { noAck: true });
  const b = await s.consume(q, { noAck: true }, other);
  for (let i = 0; i < 6; i++) await s.send(q, `m${i}`);
  const got = [...(await a.take(3)), ...(await b.take(3))];
  assert.deepEqual(bodies(got).sort(), ['m0', 'm1', 'm2', 'm3', 'm4', 'm5']);
  await a.quiet();
  await b.quiet();
});

brokerTest('recover: basic.recover redelivers unacked messages with redelivered=true', async (s) => {
  const q = await s.queue({ exclusive: true });
  await s.send(q, 'r');
  const inbox = await s.consume(q, { noAck: false });
  const first = await inbox.next();
  assert.equal(first.fields.redelivered, false);
  await s.ch.recover();
  const again = await inbox.next();
  assert.equal(again.content.toString(), 'r');
  assert.equal(again.fields.redelivered, true);
  s.ch.ack(again);
  await inbox.quiet();
});
