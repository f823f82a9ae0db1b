'use strict';
// Publishing: properties, content framing, mandatory returns and publisher confirms
// (AMQP 0-9-1 §1.8.3.7 basic.publish, §4.2.6 content framing; RabbitMQ's confirm.select).

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { brokerTest, brokerUrl, expectChannelError, sleep, withTimeout, WAIT } = require('./support');

brokerTest('publish: every basic property survives the round trip', async (s) => {
  const q = await s.queue({ exclusive: true, maxPriority: 10 });
  const props = {
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    headers: { tenant: 'acme', attempt: 3 },
    persistent: true,
    priority: 7,
    correlationId: 'corr-42',
    replyTo: 'replies.here',
    expiration: '60000',
    messageId: 'msg-0001',
    timestamp: 1700000000,
    type: 'order.created',
    userId: 'guest',
    appId: 'amqplib-suite',
  };
  await s.send(q, '{"ok":true}', props);
  const m = await s.ch.get(q, { noAck: true });
  assert.ok(m, 'message expected');
  assert.equal(m.content.toString(), '{"ok":true}');
  const p = m.properties;
  assert.equal(p.contentType, 'application/json');
  assert.equal(p.contentEncoding, 'utf-8');
  assert.deepEqual(p.headers, { tenant: 'acme', attempt: 3 });
  assert.equal(p.deliveryMode, 2);
  assert.equal(p.priority, 7);
  assert.equal(p.correlationId, 'corr-42');
  assert.equal(p.replyTo, 'replies.here');
  assert.equal(p.expiration, '60000');
  assert.equal(p.messageId, 'msg-0001');
  assert.equal(p.timestamp, 1700000000);
  assert.equal(p.type, 'order.created');
  assert.equal(p.userId, 'guest');
  assert.equal(p.appId, 'amqplib-suite');
  assert.equal(m.fields.exchange, '');
  assert.equal(m.fields.routingKey, q);
  assert.equal(m.fields.redelivered, false);
});

brokerTest('publish: header values of every field-table type survive the round trip', async (s) => {
  const q = await s.queue({ exclusive: true });
  const headers = {
    str: 'text ü',
    i8: -7,
    i16: 1000,
    i32: -100000,
    i64: 2 ** 40,
    dbl: 1.5,
    flt: { '!': 'float', value: 0.25 },
    u8: { '!': 'uint8', value: 200 },
    u16: { '!': 'uint16', value: 60000 },
    u32: { '!': 'uint32', value: 4000000000 },
    ts: { '!': 'timestamp', value: 1700000000 },
    dec: { '!': 'decimal', value: { places: 2, digits: 12345 } },
    yes: true,
    no: false,
    nothing: null,
    bytes: Buffer.from([0, 1, 2, 255]),
    list: [1, 'two', [3], { four: 4 }],
    table: { nested: { deeper: 'yes' }, n: 1 },
  };
  await s.send(q, 'typed', { headers });
  const m = await s.ch.get(q, { noAck: true });
  assert.ok(m, 'message expected');
  assert.deepEqual(m.properties.headers, {
    ...headers,
    flt: 0.25,
    u8: 200,
    u16: 60000,
    u32: 4000000000,
    bytes: Buffer.from([0, 1, 2, 255]),
  });
});

brokerTest('publish: a user-id other than the connection user is 406 PRECONDITION_FAILED', async (s) => {
  const q = await s.queue({ exclusive: true });
  await expectChannelError(
    s.ch,
    406,
    /PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user was 'guest'/,
    () => {
      s.ch.sendToQueue(q, Buffer.from('x'), { userId: 'mallory' });
    },
  );
  const ch = await s.channel();
  assert.equal(await s.messageCount(q, ch), 0);
});

brokerTest('publish: an empty body and sendToQueue without a confirm', async (s) => {
  const q = await s.queue({ exclusive: true });
  assert.equal(s.ch.sendToQueue(q, Buffer.alloc(0)), true);
  assert.equal(s.ch.sendToQueue(q, Buffer.from('after empty')), true);
  await s.waitCount(q, 2);
  const first = await s.ch.get(q, { noAck: true });
  assert.equal(first.content.length, 0);
  const second = await s.ch.get(q, { noAck: true });
  assert.equal(second.content.toString(), 'after empty');
});

brokerTest('publish: a 1 MiB message round-trips byte for byte', async (s) => {
  const q = await s.queue({ exclusive: true });
  const payload = crypto.randomBytes(1024 * 1024);
  await s.send(q, payload);
  const inbox = await s.consume(q, { noAck: true });
  const m = await inbox.next();
  assert.equal(m.content.length, payload.length);
  assert.ok(m.content.equals(payload), '1 MiB body differs');
});

brokerTest('publish: a body split across many frames (frameMax 4096) is reassembled both ways', async (s) => {
  const conn = await s.connect(brokerUrl({ frameMax: 4096 }));
  assert.equal(conn.connection.frameMax, 4096);
  const ch = await s.confirmChannel(conn);
  const q = await s.queue({ exclusive: false, autoDelete: false }, s.name('q'), ch);
  const payload = crypto.randomBytes(50000); // 13 body frames of at most 4088 bytes
  const headers = { pad: 'h'.repeat(2000) }; // a content header of half a frame
  await new Promise((resolve, reject) => {
    ch.sendToQueue(q, payload, { headers }, (err) => (err ? reject(err) : resolve()));
  });
  const m = await ch.get(q, { noAck: true });
  assert.ok(m, 'message expected');
  assert.ok(m.content.equals(payload), 'body differs after reassembly');
  assert.equal(m.properties.headers.pad.length, 2000);
  // Delivered to a consumer on a connection with the default frame size as well.
  await s.send(q, payload);
  const inbox = await s.consume(q, { noAck: true });
  assert.ok((await inbox.next()).content.equals(payload));
});

brokerTest('publish: mandatory and unroutable comes back as basic.return 312 NO_ROUTE', async (s) => {
  const ex = await s.exchange('direct');
  const returned = new Promise((resolve) => s.ch.once('return', resolve));
  s.ch.publish(ex, 'nowhere', Buffer.from('bounce'), { mandatory: true, messageId: 'r1', headers: { h: 1 } });
  const m = await withTimeout(returned, WAIT, 'basic.return');
  assert.equal(m.fields.replyCode, 312);
  assert.equal(m.fields.replyText, 'NO_ROUTE');
  assert.equal(m.fields.exchange, ex);
  assert.equal(m.fields.routingKey, 'nowhere');
  assert.equal(m.content.toString(), 'bounce');
  assert.equal(m.properties.messageId, 'r1');
  assert.deepEqual(m.properties.headers, { h: 1 });
});

brokerTest('publish: not mandatory and unroutable is dropped silently', async (s) => {
  const ex = await s.exchange('direct');
  let returns = 0;
  s.ch.on('return', () => returns++);
  s.ch.publish(ex, 'nowhere', Buffer.from('dropped'));
  const q = await s.queue({ exclusive: true });
  s.ch.sendToQueue(q, Buffer.from('marker'), { mandatory: true });
  await s.waitCount(q, 1);
  await sleep(100);
  assert.equal(returns, 0);
  assert.deepEqual(s.ch.errors, []);
});

brokerTest('confirm: every publish callback is called with null and waitForConfirms resolves', async (s) => {
  const q = await s.queue({ exclusive: true });
  const ch = await s.confirmChannel();
  const acked = [];
  for (let i = 0; i < 50; i++) {
    ch.sendToQueue(q, Buffer.from(`m${i}`), { persistent: i % 2 === 0 }, (err) => acked.push(err === null ? i : err));
  }
  await withTimeout(ch.waitForConfirms(), WAIT, 'confirms');
  assert.equal(acked.length, 50);
  assert.deepEqual(
    [...acked].sort((a, b) => a - b),
    Array.from({ length: 50 }, (_, i) => i),
  );
  assert.equal(await s.messageCount(q), 50);
});

brokerTest('confirm: an unroutable mandatory publish is returned before it is confirmed', async (s) => {
  const ex = await s.exchange('fanout');
  const ch = await s.confirmChannel();
  const events = [];
  ch.on('return', (m) => events.push(`return:${m.content}`));
  await new Promise((resolve, reject) => {
    ch.publish(ex, '', Buffer.from('x'), { mandatory: true }, (err) => {
      events.push(err === null ? 'ack' : 'nack');
      if (err) reject(err);
      else resolve();
    });
  });
  assert.deepEqual(events, ['return:x', 'ack']);
});

brokerTest('publish: a per-message expiration drops the message after it', async (s) => {
  const q = await s.queue({ exclusive: true });
  await s.send(q, 'short', { expiration: '50' });
  await s.send(q, 'long', { expiration: '60000' });
  await sleep(200);
  assert.deepEqual(await s.getAll(q), ['long']);
});

brokerTest('publish: x-max-priority delivers higher priorities first', async (s) => {
  const q = await s.queue({ exclusive: true, maxPriority: 10 });
  const sent = [
    ['p1', 1],
    ['p9', 9],
    ['none', undefined],
    ['p5', 5],
    ['p9b', 9],
    ['p10', 10],
  ];
  for (const [b, priority] of sent) await s.send(q, b, { priority });
  assert.deepEqual(await s.getAll(q), ['p10', 'p9', 'p9b', 'p5', 'p1', 'none']);
});
