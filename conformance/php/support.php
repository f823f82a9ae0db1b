<?php
// Shared helpers for the PHP conformance suite: broker settings from WARREN_URL, a test
// registry, assertions, bounded waits and per-test cleanup of declared queues and exchanges.
//
// The broker under test comes from WARREN_URL (amqp://user:pass@host:port/vhost, the vhost
// percent-encoded, "/%2F" or an empty path meaning "/"). Every wait is bounded: connections use
// short socket and RPC timeouts, and each test runs under an alarm.

declare(strict_types=1);

use PhpAmqpLib\Channel\AMQPChannel;
use PhpAmqpLib\Connection\AMQPStreamConnection;
use PhpAmqpLib\Exception\AMQPTimeoutException;

// WAIT bounds every wait for something that should happen (seconds).
const WAIT = 3.0;
// QUIET is how long we watch for something that should NOT happen (seconds).
const QUIET = 0.3;
// TEST_TIMEOUT is the hard limit of one test and its cleanup (seconds).
const TEST_TIMEOUT = 15;

/** AssertionFailed is a failed expectation of a test. */
final class AssertionFailed extends \Exception
{
}

/** TestTimedOut is thrown from the alarm handler when a test outlives TEST_TIMEOUT. */
final class TestTimedOut extends \Exception
{
}

/** Broker holds the parts of WARREN_URL. */
final class Broker
{
    public string $host;
    public int $port;
    public string $user;
    public string $password;
    public string $vhost;

    public static function fromEnv(): self
    {
        $raw = getenv('WARREN_URL');
        if ($raw === false || $raw === '') {
            throw new \RuntimeException('WARREN_URL is not set (amqp://guest:guest@host:port/)');
        }
        $u = parse_url($raw);
        if ($u === false || ($u['scheme'] ?? '') !== 'amqp' || !isset($u['host'])) {
            throw new \RuntimeException("WARREN_URL is not an amqp:// URL: $raw");
        }
        $b = new self();
        $b->host = $u['host'];
        $b->port = (int)($u['port'] ?? 5672);
        $b->user = rawurldecode($u['user'] ?? 'guest');
        $b->password = rawurldecode($u['pass'] ?? 'guest');
        $path = $u['path'] ?? '';
        $b->vhost = ($path === '' || $path === '/') ? '/' : rawurldecode(substr($path, 1));
        return $b;
    }
}

/** Registry of the tests of this run, in the order they were declared. */
final class Registry
{
    /** @var array<string, callable> */
    public static array $tests = [];
}

/** test registers a test; names must be unique within the run. */
function test(string $name, callable $fn): void
{
    if (isset(Registry::$tests[$name])) {
        throw new \LogicException("duplicate test name $name");
    }
    Registry::$tests[$name] = $fn;
}

/**
 * T is what a test receives: connections and names that are cleaned up when the test ends.
 */
final class T
{
    public Broker $broker;
    public string $name;
    /** @var list<AMQPStreamConnection> */
    private array $conns = [];
    /** @var list<string> */
    private array $queues = [];
    /** @var list<string> */
    private array $exchanges = [];
    /** @var list<callable> */
    private array $cleanups = [];
    private int $seq = 0;

    public function __construct(Broker $broker, string $name)
    {
        $this->broker = $broker;
        $this->name = $name;
    }

    /** connect opens a php-amqplib connection (closed at the end of the test). */
    public function connect(?string $user = null, ?string $password = null, ?string $vhost = null): AMQPStreamConnection
    {
        $b = $this->broker;
        $c = new AMQPStreamConnection(
            $b->host,
            $b->port,
            $user ?? $b->user,
            $password ?? $b->password,
            $vhost ?? $b->vhost,
            false,      // insist
            'AMQPLAIN',
            null,
            'en_US',
            3.0,        // connection timeout
            6.0,        // read/write timeout
            null,
            false,
            0,          // no heartbeats: each test is short
            5.0         // channel RPC timeout: a reply that never comes fails the test
        );
        $this->conns[] = $c;
        return $c;
    }

    /** channel opens a fresh connection with one channel on it. */
    public function channel(): AMQPChannel
    {
        return $this->connect()->channel();
    }

    /** unique returns a resource name unique to this test, run and call. */
    public function unique(string $what): string
    {
        $this->seq++;
        return sprintf('php.%s.%s.%d.%d', $this->name, $what, getmypid(), $this->seq);
    }

    /** queue returns a unique queue name that is deleted when the test ends. */
    public function queue(string $what = 'q'): string
    {
        $n = $this->unique($what);
        $this->queues[] = $n;
        return $n;
    }

    /** exchange returns a unique exchange name that is deleted when the test ends. */
    public function exchange(string $what = 'x'): string
    {
        $n = $this->unique($what);
        $this->exchanges[] = $n;
        return $n;
    }

    /**
     * short returns a short unique exchange (kind "x") or queue (kind "q") name, deleted when the
     * test ends, for tests whose reply texts would pass 255 bytes with the test name in them.
     */
    public function short(string $kind, string $what): string
    {
        $this->seq++;
        $n = sprintf('php.%s.%d.%d', $what, getmypid(), $this->seq);
        if ($kind === 'x') {
            $this->exchanges[] = $n;
        } else {
            $this->queues[] = $n;
        }
        return $n;
    }

    /** cleanup registers fn to run when the test ends (last registered runs first). */
    public function cleanup(callable $fn): void
    {
        $this->cleanups[] = $fn;
    }

    /** finish closes the test's connections and deletes what it declared; returns problems. */
    public function finish(): array
    {
        $problems = [];
        foreach (array_reverse($this->cleanups) as $fn) {
            try {
                $fn();
            } catch (\Throwable $e) {
                $problems[] = 'cleanup: ' . describe($e);
            }
        }
        foreach ($this->conns as $c) {
            try {
                if ($c->isConnected()) {
                    $c->close();
                }
            } catch (\Throwable $e) {
                // the test may have left the connection broken on purpose
            }
        }
        $this->conns = [];
        if (!$this->queues && !$this->exchanges) {
            return $problems;
        }
        try {
            $c = $this->connect();
            $ch = $c->channel();
            foreach ($this->queues as $q) {
                $ch->queue_delete($q);
            }
            foreach ($this->exchanges as $x) {
                $ch->exchange_delete($x);
            }
            $c->close();
        } catch (\Throwable $e) {
            $problems[] = 'cleanup: ' . describe($e);
        }
        return $problems;
    }
}

/** describe renders an exception for the log: class, code, message and where it was thrown. */
function describe(\Throwable $e): string
{
    $where = '';
    foreach ($e->getTrace() as $f) {
        if (isset($f['file']) && str_starts_with($f['file'], __DIR__)) {
            $where = sprintf(' at %s:%d', basename($f['file']), $f['line']);
            break;
        }
    }
    if (str_starts_with($e->getFile(), __DIR__)) {
        $where = sprintf(' at %s:%d', basename($e->getFile()), $e->getLine());
    }
    return sprintf('%s(%d): %s%s', get_class($e), $e->getCode(), $e->getMessage(), $where);
}

function fail(string $msg): never
{
    throw new AssertionFailed($msg);
}

function ok(bool $cond, string $what): void
{
    if (!$cond) {
        fail("expected $what");
    }
}

function eq(mixed $want, mixed $got, string $what): void
{
    if ($want !== $got) {
        fail(sprintf('%s: want %s, got %s', $what, show($want), show($got)));
    }
}

function show(mixed $v): string
{
    $s = var_export($v, true);
    $s = preg_replace('/\s+/', ' ', $s);
    return strlen($s) > 600 ? substr($s, 0, 600) . '...' : $s;
}

/**
 * raises runs fn and checks that it throws an exception of class cls with the given code;
 * returns the exception.
 */
function raises(string $cls, int $code, callable $fn, string $what): \Throwable
{
    try {
        $fn();
    } catch (\Throwable $e) {
        if ($e instanceof AssertionFailed || $e instanceof TestTimedOut) {
            throw $e;
        }
        if (!($e instanceof $cls) || $e->getCode() !== $code) {
            fail(sprintf('%s: want %s with code %d, got %s', $what, $cls, $code, describe($e)));
        }
        return $e;
    }
    fail("$what: want $cls with code $code, got no exception");
}

/** waitFor lets ch dispatch incoming methods until cond() holds or WAIT passes. */
function waitFor(AMQPChannel $ch, callable $cond, string $what, float $timeout = WAIT): void
{
    $deadline = microtime(true) + $timeout;
    while (!$cond()) {
        $left = $deadline - microtime(true);
        if ($left <= 0) {
            fail("timed out after {$timeout}s waiting for $what");
        }
        try {
            $ch->wait(null, false, $left);
        } catch (AMQPTimeoutException $e) {
            // checked against the deadline above
        }
    }
}

/** quiet lets ch dispatch incoming methods for QUIET seconds (to see that nothing more comes). */
function quiet(AMQPChannel $ch, float $for = QUIET): void
{
    $deadline = microtime(true) + $for;
    while (($left = $deadline - microtime(true)) > 0) {
        try {
            $ch->wait(null, false, $left);
        } catch (AMQPTimeoutException $e) {
            return;
        }
    }
}

/** drain basic.gets every message of q (auto-ack) and returns their bodies in order. */
function drain(AMQPChannel $ch, string $q): array
{
    $bodies = [];
    while (($m = $ch->basic_get($q, true)) !== null) {
        $bodies[] = $m->getBody();
        if (count($bodies) > 10000) {
            fail("queue $q never empties");
        }
    }
    return $bodies;
}

/** runTests runs the registered tests whose name matches filter; returns the process exit code. */
function runTests(string $suite, string $filter): int
{
    $broker = Broker::fromEnv();
    pcntl_async_signals(true);
    pcntl_signal(SIGALRM, function (): void {
        throw new TestTimedOut(sprintf('test did not finish within %ds', TEST_TIMEOUT));
    });

    $passed = 0;
    $failed = [];
    $start = microtime(true);
    printf("php %s suite against %s:%d vhost %s (php %s)\n", $suite, $broker->host, $broker->port,
        $broker->vhost, PHP_VERSION);
    foreach (Registry::$tests as $name => $fn) {
        if ($filter !== '' && !preg_match('/' . $filter . '/', $name)) {
            continue;
        }
        $t = new T($broker, $name);
        $problems = [];
        $t0 = microtime(true);
        pcntl_alarm(TEST_TIMEOUT);
        try {
            $fn($t);
        } catch (\Throwable $e) {
            $problems[] = describe($e);
        }
        try {
            $problems = array_merge($problems, $t->finish());
        } catch (\Throwable $e) {
            $problems[] = 'cleanup: ' . describe($e);
        }
        pcntl_alarm(0);
        $ms = (int)round((microtime(true) - $t0) * 1000);
        if ($problems) {
            $failed[] = $name;
            printf("--- FAIL %s (%dms)\n", $name, $ms);
            foreach ($problems as $p) {
                printf("    %s\n", $p);
            }
        } else {
            $passed++;
            printf("--- PASS %s (%dms)\n", $name, $ms);
        }
    }
    $total = $passed + count($failed);
    printf("php %s suite: %d passed, %d failed, %d run in %.1fs\n", $suite, $passed, count($failed), $total,
        microtime(true) - $start);
    if ($failed) {
        printf("failed: %s\n", implode(', ', $failed));
        return 1;
    }
    if ($total === 0) {
        printf("no test matched %s\n", show($filter));
        return 1;
    }
    return 0;
}
