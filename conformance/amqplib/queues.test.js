'use strict';
// Queues: declare, passive declare, exclusive, durable, arguments, purge and delete
// (AMQP 0-9-1 §1.7.2 queue class; RabbitMQ's optional queue arguments).

const assert = require('node:assert/strict');
const { brokerTest, expectChannelError, sleep, withTimeout, WAIT } = require('./support');

brokerTest('queue: a server-named queue is amq.gen-*, exclusive, and gone with its connection', async (s) => {
  const conn = await s.connect();
  const ch = await s.channel(conn);
  const ok = await ch.assertQueue('', { exclusive: true });
  assert.match(ok.queue, /^amq\.gen-/);
  assert.equal(ok.messageCount, 0);
  assert.equal(ok.consumerCount, 0);
  const sibling = await s.channel(conn);
  assert.equal((await sibling.checkQueue(ok.queue)).queue, ok.queue);
  await conn.close();
  await expectChannelError(s.ch, 404, /NOT_FOUND - no queue 'amq\.gen-.*' in vhost '\/'/, () => s.ch.checkQueue(ok.queue));
});

brokerTest('queue: declare-ok reports the ready messages and the consumers', async (s) => {
  const q = await s.queue({ exclusive: true });
  for (let i = 0; i < 3; i++) await s.send(q, `m${i}`);
  assert.deepEqual(await s.ch.assertQueue(q, { exclusive: true }), { queue: q, messageCount: 3, consumerCount: 0 });
  const inbox = await s.consume(q, { noAck: false });
  await inbox.take(3);
  const other = await s.channel();
  await other.consume(q, () => {}, { noAck: false });
  // Delivered but unacknowledged messages are not ready, so they are not counted.
  assert.deepEqual(await s.ch.assertQueue(q, { exclusive: true }), { queue: q, messageCount: 0, consumerCount: 2 });
  assert.equal((await other.checkQueue(q)).consumerCount, 2);
});

brokerTest('queue: checkQueue on a missing queue is a 404 NOT_FOUND channel error', async (s) => {
  const q = s.name('missing');
  await expectChannelError(s.ch, 404, /NOT_FOUND - no queue '.*' in vhost '\/'/, () => s.ch.checkQueue(q));
});

brokerTest('queue: an exclusive queue is locked (405 RESOURCE_LOCKED) for another connection', async (s) => {
  const q = await s.queue({ exclusive: true });
  const other = await s.connect();
  const locked = /RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '.*' in vhost '\/'/;
  const consumeCh = await s.channel(other);
  await expectChannelError(consumeCh, 405, locked, () => consumeCh.consume(q, () => {}));
  const passiveCh = await s.channel(other);
  await expectChannelError(passiveCh, 405, locked, () => passiveCh.checkQueue(q));
  // The owner is unaffected.
  assert.equal((await s.ch.checkQueue(q)).queue, q);
});

brokerTest('queue: durable flag is kept and an inequivalent redeclare is 406 PRECONDITION_FAILED', async (s) => {
  const q = await s.queue({ durable: true });
  assert.equal((await s.ch.assertQueue(q, { durable: true })).queue, q);
  await expectChannelError(
    s.ch,
    406,
    /PRECONDITION_FAILED - inequivalent arg 'durable' for queue '.*' in vhost '\/': received 'false' but current is 'true'/,
    () => s.ch.assertQueue(q, { durable: false }),
  );
});

brokerTest('queue: an inequivalent x-max-length on redeclare is 406 PRECONDITION_FAILED', async (s) => {
  const q = await s.queue({ exclusive: true, maxLength: 10 });
  assert.equal((await s.ch.assertQueue(q, { exclusive: true, maxLength: 10 })).queue, q);
  await expectChannelError(s.ch, 406, /PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '.*'/, () =>
    s.ch.assertQueue(q, { exclusive: true, maxLength: 20 }),
  );
});

brokerTest('queue: an x-message-ttl of the wrong type is 406 PRECONDITION_FAILED invalid arg', async (s) => {
  const q = s.name('badttl');
  s.trackQueue(q);
  await expectChannelError(s.ch, 406, /PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue '.*'/, () =>
    s.ch.assertQueue(q, { exclusive: true, arguments: { 'x-message-ttl': 'soon' } }),
  );
});

brokerTest('queue: x-message-ttl drops messages that waited too long', async (s) => {
  const q = await s.queue({ exclusive: true, messageTtl: 100 });
  await s.send(q, 'expires');
  await sleep(250);
  assert.equal(await s.ch.get(q, { noAck: true }), false);
  await s.waitCount(q, 0);
  // A message that is consumed in time is delivered.
  await s.send(q, 'fresh');
  const m = await s.ch.get(q, { noAck: true });
  assert.equal(m && m.content.toString(), 'fresh');
});

brokerTest('queue: x-max-length drops from the head (default overflow)', async (s) => {
  const q = await s.queue({ exclusive: true, maxLength: 2 });
  for (const b of ['a', 'b', 'c', 'd']) await s.send(q, b);
  assert.equal(await s.messageCount(q), 2);
  assert.deepEqual(await s.getAll(q), ['c', 'd']);
});

brokerTest('queue: x-overflow reject-publish nacks the publish that does not fit', async (s) => {
  const q = await s.queue({ exclusive: true, maxLength: 1, arguments: { 'x-overflow': 'reject-publish' } });
  await s.send(q, 'fits');
  await assert.rejects(s.send(q, 'does not fit'), /message nacked/);
  assert.deepEqual(await s.getAll(q), ['fits']);
});

brokerTest('queue: purgeQueue and deleteQueue report the ready messages they removed', async (s) => {
  const q = await s.queue({ exclusive: true });
  for (let i = 0; i < 5; i++) await s.send(q, `m${i}`);
  assert.deepEqual(await s.ch.purgeQueue(q), { messageCount: 5 });
  assert.equal(await s.messageCount(q), 0);
  for (let i = 0; i < 3; i++) await s.send(q, `n${i}`);
  assert.deepEqual(await s.ch.deleteQueue(q), { messageCount: 3 });
  await expectChannelError(s.ch, 404, /NOT_FOUND/, () => s.ch.checkQueue(q));
});

brokerTest('queue: deleteQueue ifEmpty on a queue with messages is 406 PRECONDITION_FAILED', async (s) => {
  const q = await s.queue({ exclusive: true });
  await s.send(q, 'keep me');
  await expectChannelError(s.ch, 406, /PRECONDITION_FAILED - queue '.*' in vhost '\/' not empty/, () =>
    s.ch.deleteQueue(q, { ifEmpty: true }),
  );
  const ch = await s.channel();
  assert.equal(await s.messageCount(q, ch), 1, 'the queue and its message are still there');
});

brokerTest('queue: deleteQueue ifUnused on a queue with a consumer is 406 PRECONDITION_FAILED', async (s) => {
  const q = await s.queue({ exclusive: true });
  const cch = await s.channel();
  await cch.consume(q, () => {});
  await expectChannelError(s.ch, 406, /PRECONDITION_FAILED - queue '.*' in vhost '\/' in use/, () =>
    s.ch.deleteQueue(q, { ifUnused: true }),
  );
  assert.equal((await cch.checkQueue(q)).consumerCount, 1);
});

brokerTest('queue: an auto-delete queue goes when its last consumer is cancelled', async (s) => {
  const q = await s.queue({ autoDelete: true });
  const ok = await s.ch.consume(q, () => {});
  await s.ch.cancel(ok.consumerTag);
  const deadline = Date.now() + WAIT;
  for (;;) {
    const ch = await s.channel();
    try {
      await ch.checkQueue(q);
    } catch (e) {
      assert.equal(e.code, 404, e.message);
      await withTimeout(ch.closed, WAIT, 'channel close');
      return;
    }
    await ch.close();
    if (Date.now() > deadline) assert.fail('auto-delete queue still exists after its consumer was cancelled');
    await sleep(20);
  }
});
