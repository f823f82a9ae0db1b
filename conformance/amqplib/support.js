'use strict';
// Shared helpers for the amqplib conformance suite (run by conformance/amqplib_test.go).
//
// The broker under test comes from WARREN_URL (amqp://guest:guest@host:port/%2F, vhost "/").
// Each test gets its own connection and channel; every queue and exchange it declares is named
// after the test, the process id and a random suffix, and is deleted when the test ends. Every
// wait is bounded: WAIT for something that should happen, QUIET to show something does not.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { test } = require('node:test');
const amqp = require('amqplib');

const URL_ENV = process.env.WARREN_URL || '';

// Upper bound of every wait for something that should happen.
const WAIT = 3000;
// How long we watch for something that should NOT happen.
const QUIET = 300;
// Hard limit of one test, cleanup included.
const TEST_TIMEOUT = 20000;

const RUN_ID = `${process.pid}.${crypto.randomBytes(3).toString('hex')}`;
let seq = 0;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// withTimeout settles like promise, or rejects once ms have passed.
function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// brokerUrl is WARREN_URL with query parameters (frameMax, heartbeat, ...) and optionally the
// user, password or vhost replaced.
function brokerUrl(query = {}, { user, password, vhost } = {}) {
  if (!URL_ENV) throw new Error('WARREN_URL is not set (amqp://guest:guest@host:port/%2F)');
  const u = new URL(URL_ENV);
  if (user !== undefined) u.username = encodeURIComponent(user);
  if (password !== undefined) u.password = encodeURIComponent(password);
  if (vhost !== undefined) u.pathname = `/${encodeURIComponent(vhost)}`;
  for (const [k, v] of Object.entries(query)) u.searchParams.set(k, String(v));
  return u.toString();
}

// watch records a connection's or channel's error and settles `closed` with it (null for a
// clean close). Without an 'error' listener amqplib's EventEmitter would throw.
function watch(emitter) {
  emitter.errors = [];
  emitter.on('error', (e) => emitter.errors.push(e));
  emitter.closed = new Promise((resolve) => emitter.once('close', () => resolve(emitter.errors[0] || null)));
  return emitter;
}

async function connect(url, socketOptions = {}) {
  const conn = await amqp.connect(url || brokerUrl(), { timeout: 5000, ...socketOptions });
  return watch(conn);
}

// Inbox collects deliveries of one consumer and hands them out in order.
class Inbox {
  constructor() {
    this.items = [];
    this.waiters = [];
  }

  push(m) {
    const w = this.waiters.shift();
    if (w) w(m);
    else this.items.push(m);
  }

  // next resolves with the next delivery (null is a server cancel), failing after ms.
  next(ms = WAIT, what = 'a delivery') {
    if (this.items.length > 0) return Promise.resolve(this.items.shift());
    let waiter;
    const p = new Promise((resolve) => {
      waiter = resolve;
      this.waiters.push(resolve);
    });
    return withTimeout(p, ms, what).catch((e) => {
      this.waiters = this.waiters.filter((w) => w !== waiter);
      throw e;
    });
  }

  async take(n, ms = WAIT) {
    const out = [];
    for (let i = 0; i < n; i++) out.push(await this.next(ms, `delivery ${i + 1} of ${n}`));
    return out;
  }

  // quiet asserts that nothing more arrives within ms.
  async quiet(ms = QUIET) {
    await sleep(ms);
    assert.equal(this.items.length, 0, `unexpected deliveries: ${this.items.map(body).join(', ')}`);
  }
}

function body(m) {
  return m === null ? '<cancel>' : m.content.toString();
}

// Session is one test's broker state: a connection, a channel and the resources to delete.
class Session {
  constructor(testName) {
    this.testName = testName.replace(/[^A-Za-z0-9_-]+/g, '_').slice(0, 60);
    this.conns = [];
    this.queues = [];
    this.exchanges = [];
  }

  async open() {
    this.conn = await this.connect();
    this.ch = await this.channel();
  }

  // name is a resource name unique to this test and run.
  name(suffix = '') {
    seq++;
    return `amqplib.${this.testName}.${RUN_ID}.${seq}${suffix ? `.${suffix}` : ''}`;
  }

  async connect(url, socketOptions) {
    const c = await connect(url, socketOptions);
    this.conns.push(c);
    return c;
  }

  async channel(conn = this.conn) {
    return watch(await conn.createChannel());
  }

  async confirmChannel(conn = this.conn) {
    return watch(await conn.createConfirmChannel());
  }

  // queue declares a queue named after the test (or server-named with name '') and deletes it
  // at the end; it resolves with the queue's name.
  async queue(options = {}, name = this.name('q'), ch = this.ch) {
    const ok = await ch.assertQueue(name, options);
    this.queues.push(ok.queue);
    return ok.queue;
  }

  async exchange(type, options = {}, name = this.name(type), ch = this.ch) {
    await ch.assertExchange(name, type, { durable: false, ...options });
    this.exchanges.push(name);
    return name;
  }

  trackQueue(q) {
    this.queues.push(q);
  }

  trackExchange(e) {
    this.exchanges.push(e);
  }

  // publish publishes on a lazily opened confirm channel and waits for the broker's ack, so a
  // following get or checkQueue sees the message (or its absence).
  async publish(exchange, routingKey, content, options = {}) {
    if (!this.pubCh) this.pubCh = await this.confirmChannel();
    const buf = Buffer.isBuffer(content) ? content : Buffer.from(content);
    await new Promise((resolve, reject) => {
      this.pubCh.publish(exchange, routingKey, buf, options, (err) => (err ? reject(err) : resolve()));
    });
  }

  async send(queue, content, options = {}) {
    return this.publish('', queue, content, options);
  }

  // consume starts a consumer whose deliveries go to the returned inbox.
  async consume(queue, options = {}, ch = this.ch) {
    const inbox = new Inbox();
    const ok = await ch.consume(queue, (m) => inbox.push(m), options);
    inbox.consumerTag = ok.consumerTag;
    return inbox;
  }

  // getAll empties queue with auto-ack gets and returns the bodies in order.
  async getAll(queue, ch = this.ch) {
    const out = [];
    for (let i = 0; i < 1000; i++) {
      const m = await ch.get(queue, { noAck: true });
      if (m === false) return out;
      out.push(m.content.toString());
    }
    throw new Error(`queue ${queue} did not run empty`);
  }

  async messageCount(queue, ch = this.ch) {
    return (await ch.checkQueue(queue)).messageCount;
  }

  // waitCount waits until queue holds n ready messages.
  async waitCount(queue, n, ch = this.ch) {
    const deadline = Date.now() + WAIT;
    for (;;) {
      const got = await this.messageCount(queue, ch);
      if (got === n) return;
      if (Date.now() > deadline) assert.fail(`queue ${queue} holds ${got} ready messages, want ${n}`);
      await sleep(20);
    }
  }

  async cleanup() {
    try {
      if (this.queues.length > 0 || this.exchanges.length > 0) {
        const c = await connect();
        try {
          for (const q of this.queues) await deleteQuietly(c, (ch) => ch.deleteQueue(q));
          for (const e of this.exchanges) await deleteQuietly(c, (ch) => ch.deleteExchange(e));
        } finally {
          await c.close().catch(() => {});
        }
      }
    } finally {
      for (const c of this.conns) await c.close().catch(() => {});
    }
  }
}

async function deleteQuietly(conn, op) {
  const ch = watch(await conn.createChannel());
  try {
    await op(ch);
    await ch.close();
  } catch {
    // already gone, or the channel was closed by the broker
  }
}

// expectChannelError runs op (which may return a promise that rejects) and asserts that the
// broker closes ch with code and a reply text matching text. It returns the error.
async function expectChannelError(ch, code, text, op) {
  let opError = null;
  try {
    await op();
  } catch (e) {
    opError = e;
  }
  const err = await withTimeout(ch.closed, WAIT, `the broker to close the channel with ${code}`);
  assert.ok(err, `channel closed without an error (operation error: ${opError && opError.message})`);
  assert.equal(err.code, code, err.message);
  assert.match(err.message, text);
  if (opError) assert.equal(opError.code, code, opError.message);
  return err;
}

// brokerTest registers a test that gets a fresh Session and cleans it up afterwards.
function brokerTest(name, fn) {
  test(name, { timeout: TEST_TIMEOUT }, async (t) => {
    const s = new Session(name);
    t.after(() => s.cleanup());
    await s.open();
    await fn(s, t);
  });
}

module.exports = {
  QUIET,
  WAIT,
  Inbox,
  brokerTest,
  brokerUrl,
  connect,
  expectChannelError,
  sleep,
  watch,
  withTimeout,
};
