'use strict';
// Exchanges and routing (AMQP 0-9-1 §3.1.3 exchange types, §1.6.2 exchange class).

const assert = require('node:assert/strict');
const { brokerTest, expectChannelError } = require('./support');

brokerTest('exchange: assertExchange of every type is idempotent, checkExchange finds it, delete removes it', async (s) => {
  for (const type of ['direct', 'fanout', 'topic', 'headers']) {
    const ex = await s.exchange(type);
    assert.deepEqual(await s.ch.assertExchange(ex, type, { durable: false }), { exchange: ex });
    await s.ch.checkExchange(ex);
    await s.ch.deleteExchange(ex);
  }
  const ex = s.name('gone');
  await expectChannelError(s.ch, 404, /NOT_FOUND - no exchange '.*' in vhost '\/'/, () => s.ch.checkExchange(ex));
});

brokerTest('exchange: redeclaring with another type is a 406 PRECONDITION_FAILED channel error', async (s) => {
  const ex = await s.exchange('direct');
  await expectChannelError(s.ch, 406, /PRECONDITION_FAILED - inequivalent arg 'type' for exchange '.*' in vhost '\/'/, () =>
    s.ch.assertExchange(ex, 'fanout', { durable: false }),
  );
  // The exchange is unchanged.
  const ch = await s.channel();
  await ch.checkExchange(ex);
  assert.deepEqual(await ch.assertExchange(ex, 'direct', { durable: false }), { exchange: ex });
});

brokerTest('exchange: redeclaring with another durable flag is a 406 PRECONDITION_FAILED channel error', async (s) => {
  const ex = await s.exchange('topic', { durable: false });
  await expectChannelError(s.ch, 406, /PRECONDITION_FAILED - inequivalent arg 'durable' for exchange/, () =>
    s.ch.assertExchange(ex, 'topic', { durable: true }),
  );
});

brokerTest('exchange: declaring a name in the amq. namespace is refused with 403 ACCESS_REFUSED', async (s) => {
  const ex = `amq.${s.name('reserved')}`;
  s.trackExchange(ex);
  await expectChannelError(s.ch, 403, /ACCESS_REFUSED - exchange name '.*' contains reserved prefix 'amq\.\*'/, () =>
    s.ch.assertExchange(ex, 'direct', { durable: false }),
  );
});

brokerTest('routing: direct exchange routes on the exact routing key', async (s) => {
  const ex = await s.exchange('direct');
  const q1 = await s.queue({ exclusive: true });
  const q2 = await s.queue({ exclusive: true });
  await s.ch.bindQueue(q1, ex, 'red');
  await s.ch.bindQueue(q2, ex, 'red');
  await s.ch.bindQueue(q2, ex, 'green');
  for (const key of ['red', 'green', 'blue', 'Red']) await s.publish(ex, key, key);
  assert.deepEqual(await s.getAll(q1), ['red']);
  assert.deepEqual(await s.getAll(q2), ['red', 'green']);
});

brokerTest('routing: fanout exchange copies to every bound queue whatever the key', async (s) => {
  const ex = await s.exchange('fanout');
  const queues = [];
  for (let i = 0; i < 3; i++) {
    const q = await s.queue({ exclusive: true });
    await s.ch.bindQueue(q, ex, i === 0 ? 'ignored' : '');
    queues.push(q);
  }
  await s.publish(ex, 'any.key', 'one');
  await s.publish(ex, '', 'two');
  for (const q of queues) assert.deepEqual(await s.getAll(q), ['one', 'two']);
});

brokerTest('routing: topic exchange matches * (one word) and # (zero or more words)', async (s) => {
  const ex = await s.exchange('topic');
  const patterns = { star: 'a.*.c', hashTail: 'a.#', hashHead: '#.z', all: '#', exact: 'a.b' };
  const q = {};
  for (const [k, pattern] of Object.entries(patterns)) {
    q[k] = await s.queue({ exclusive: true });
    await s.ch.bindQueue(q[k], ex, pattern);
  }
  for (const key of ['a.b.c', 'a', 'a.b', 'a.b.b.c', 'x.z', 'z', 'a.c', 'b.a.z', '']) await s.publish(ex, key, key || '<empty>');
  assert.deepEqual(await s.getAll(q.star), ['a.b.c']);
  assert.deepEqual(await s.getAll(q.hashTail), ['a.b.c', 'a', 'a.b', 'a.b.b.c', 'a.c']);
  assert.deepEqual(await s.getAll(q.hashHead), ['x.z', 'z', 'b.a.z']);
  assert.deepEqual(await s.getAll(q.all), ['a.b.c', 'a', 'a.b', 'a.b.b.c', 'x.z', 'z', 'a.c', 'b.a.z', '<empty>']);
  assert.deepEqual(await s.getAll(q.exact), ['a.b']);
});

brokerTest('routing: headers exchange with x-match all and any', async (s) => {
  const ex = await s.exchange('headers');
  const all = await s.queue({ exclusive: true });
  const any = await s.queue({ exclusive: true });
  await s.ch.bindQueue(all, ex, '', { 'x-match': 'all', format: 'pdf', type: 'report' });
  await s.ch.bindQueue(any, ex, '', { 'x-match': 'any', format: 'pdf', type: 'report' });
  const cases = [
    ['both', { format: 'pdf', type: 'report' }],
    ['both+extra', { format: 'pdf', type: 'report', lang: 'en' }],
    ['format', { format: 'pdf' }],
    ['type-wrong-format', { format: 'zip', type: 'report' }],
    ['none', { lang: 'en' }],
    ['no-headers', undefined],
  ];
  for (const [name, headers] of cases) await s.publish(ex, 'ignored', name, { headers });
  assert.deepEqual(await s.getAll(all), ['both', 'both+extra']);
  assert.deepEqual(await s.getAll(any), ['both', 'both+extra', 'format', 'type-wrong-format']);
});

brokerTest('routing: unbindQueue stops routing, bindExchange routes exchange to exchange', async (s) => {
  const src = await s.exchange('direct');
  const dst = await s.exchange('fanout');
  const direct = await s.queue({ exclusive: true });
  const viaDst = await s.queue({ exclusive: true });
  await s.ch.bindQueue(direct, src, 'k');
  await s.ch.bindQueue(viaDst, dst, '');
  await s.ch.bindExchange(dst, src, 'k');
  await s.publish(src, 'k', 'first');
  await s.ch.unbindQueue(direct, src, 'k');
  await s.publish(src, 'k', 'second');
  await s.ch.unbindExchange(dst, src, 'k');
  await s.publish(src, 'k', 'third');
  assert.deepEqual(await s.getAll(direct), ['first']);
  assert.deepEqual(await s.getAll(viaDst), ['first', 'second']);
});

brokerTest('routing: alternate-exchange receives what the exchange cannot route', async (s) => {
  const ae = await s.exchange('fanout');
  const ex = await s.exchange('direct', { alternateExchange: ae });
  const routed = await s.queue({ exclusive: true });
  const unrouted = await s.queue({ exclusive: true });
  await s.ch.bindQueue(routed, ex, 'known');
  await s.ch.bindQueue(unrouted, ae, '');
  await s.publish(ex, 'known', 'a');
  await s.publish(ex, 'unknown', 'b');
  assert.deepEqual(await s.getAll(routed), ['a']);
  assert.deepEqual(await s.getAll(unrouted), ['b']);
});

brokerTest('publish: to a missing exchange is a 404 NOT_FOUND channel error', async (s) => {
  const ex = s.name('missing');
  await expectChannelError(s.ch, 404, /NOT_FOUND - no exchange '.*' in vhost '\/'/, () => {
    s.ch.publish(ex, 'k', Buffer.from('x'));
  });
});
