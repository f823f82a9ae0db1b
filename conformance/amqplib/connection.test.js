'use strict';
// Connection and channel lifecycle (AMQP 0-9-1 §1.4.2 connection, §1.5.2 channel).

const assert = require('node:assert/strict');
const { test } = require('node:test');
const amqp = require('amqplib');
const { brokerTest, brokerUrl, connect, expectChannelError, watch, withTimeout, WAIT } = require('./support');

test('connection: connect, announce capabilities, close cleanly', { timeout: 10000 }, async () => {
  const conn = await connect();
  const props = conn.connection.serverProperties;
  assert.equal(typeof props.product, 'string');
  assert.equal(typeof props.version, 'string');
  for (const cap of [
    'publisher_confirms',
    'basic.nack',
    'consumer_cancel_notify',
    'exchange_exchange_bindings',
    'per_consumer_qos',
    'direct_reply_to',
    'authentication_failure_close',
  ]) {
    assert.equal(props.capabilities[cap], true, `capability ${cap}`);
  }
  await conn.close();
  assert.equal(await withTimeout(conn.closed, WAIT, 'close'), null, 'a clean close carries no error');
});

// amqplib may write connection.close ahead of channel frames it still buffers: a broker that
// closes its socket right after close-ok resets the connection under those writes (EPIPE,
// ECONNRESET). RabbitMQ reads on until the client closes, and so must Warren (issue 11 item 9).
test('connection: close right after publishing until sendToQueue returns false', { timeout: 20000 }, async () => {
  const conn = await connect();
  const ch = watch(await conn.createChannel());
  const q = (await ch.assertQueue('', { exclusive: true })).queue;
  const body = Buffer.alloc(1024, 'x');
  let sent = 0;
  while (ch.sendToQueue(q, body)) sent++;
  assert.ok(sent > 0, 'sendToQueue refused the first message');
  await withTimeout(conn.close(), WAIT, 'connection.close to complete');
  assert.equal(await withTimeout(conn.closed, WAIT, 'close'), null, 'a clean close carries no error');
  assert.deepEqual(ch.errors, [], 'the channel saw no error');
});

test('connection: a wrong password is refused with 403 ACCESS_REFUSED', { timeout: 10000 }, async () => {
  await assert.rejects(
    amqp.connect(brokerUrl({}, { password: 'definitely-not-the-password' }), { timeout: 5000 }),
    (e) => {
      assert.match(e.message, /403/);
      assert.match(e.message, /ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN/);
      return true;
    },
  );
});

test('connection: an unknown vhost is refused with connection.close at open', { timeout: 10000 }, async () => {
  // The broker answers connection.open with connection.close (530 NOT_ALLOWED); amqplib reports
  // only that a close came instead of open-ok, not the code.
  await assert.rejects(amqp.connect(brokerUrl({}, { vhost: 'amqplib-no-such-vhost' }), { timeout: 5000 }), {
    message: /^Expected ConnectionOpenOk; got <ConnectionClose channel:0>/,
  });
});

test('connection: tune honours a smaller frameMax and heartbeat asked by the client', { timeout: 10000 }, async () => {
  const conn = await connect(brokerUrl({ frameMax: 4096, heartbeat: 5 }));
  try {
    assert.equal(conn.connection.frameMax, 4096);
    assert.equal(conn.connection.heartbeat, 5);
    const ch = await conn.createChannel();
    const ok = await ch.assertQueue('', { exclusive: true });
    assert.match(ok.queue, /^amq\.gen-/);
    await ch.close();
  } finally {
    await conn.close();
  }
});

brokerTest('channel: many channels open and close on one connection', async (s) => {
  const chans = [];
  for (let i = 0; i < 20; i++) chans.push(await s.channel());
  const q = await s.queue({ exclusive: true });
  for (const ch of chans) assert.equal((await ch.checkQueue(q)).queue, q);
  for (const ch of chans) await ch.close();
  for (const ch of chans) assert.equal(await withTimeout(ch.closed, WAIT, 'channel close'), null);
  // The connection is still fine after all of them closed.
  const ch = await s.channel();
  assert.equal((await ch.checkQueue(q)).messageCount, 0);
});

brokerTest('channel: a channel error closes only that channel', async (s) => {
  const other = await s.channel();
  const bad = await s.channel();
  const missing = s.name('missing');
  await expectChannelError(bad, 404, /NOT_FOUND - no queue '.*' in vhost '\/'/, () => bad.checkQueue(missing));
  // The connection and its other channels keep working.
  const q = await s.queue({ exclusive: true }, s.name('q'), other);
  assert.equal((await other.checkQueue(q)).queue, q);
  assert.deepEqual(s.conn.errors, []);
});

brokerTest('connection: reusing a consumer tag on a channel is a 530 NOT_ALLOWED connection error', async (s) => {
  const q = await s.queue({ exclusive: true });
  await s.ch.consume(q, () => {}, { consumerTag: 'amqplib-dup' });
  const sibling = await s.channel();
  await assert.rejects(s.ch.consume(q, () => {}, { consumerTag: 'amqplib-dup' }));
  const err = await withTimeout(s.conn.closed, WAIT, 'the connection to close');
  assert.ok(err, 'connection closed without an error');
  assert.equal(err.code, 530, err.message);
  assert.match(err.message, /NOT_ALLOWED - attempt to reuse consumer tag 'amqplib-dup'/);
  // Every channel of the connection is gone with it.
  await withTimeout(sibling.closed, WAIT, 'the sibling channel to close');
});
