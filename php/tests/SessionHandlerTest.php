<?php

declare(strict_types=1);

namespace Paddock\Tests;

use Paddock\Client;
use Paddock\Exception\AbortedException;
use Paddock\Exception\FailedPreconditionException;
use Paddock\Exception\InvalidArgumentException;
use Paddock\SessionHandler;

/**
 * SessionHandlerTest: PHP's sessions in the cluster, through the
 * client's web session calls, the handler's methods, and real pages
 * (php processes with php/paddock-session.php as auto_prepend_file).
 */
final class SessionHandlerTest extends ClusterTestCase
{
    /**
     * quiet calls $f and returns its result and the warnings it raised,
     * instead of letting the bootstrap's handler throw them.
     *
     * @return array{0: mixed, 1: list<string>}
     */
    private static function quiet(callable $f): array
    {
        $warnings = [];
        set_error_handler(static function (int $no, string $msg) use (&$warnings): bool {
            $warnings[] = $msg;
            return true;
        }, E_USER_WARNING | E_WARNING);
        try {
            $r = $f();
        } finally {
            restore_error_handler();
        }
        return [$r, $warnings];
    }

    /** idPattern matches a 128-bit id written with $bits bits per character. */
    private static function idPattern(int $bits): string
    {
        return [5 => '/^[0-9a-v]{26}$/D', 6 => '/^[0-9a-zA-Z,-]{22}$/D'][$bits] ?? '/^[0-9a-f]{32}$/D';
    }

    private function handler(array $options = [], ?Client $c = null): SessionHandler
    {
        return new SessionHandler($c ?? $this->client(), $options);
    }

    /**
     * page runs tests/fixtures/session-page.php in a php process of its
     * own with the handler prepended, and returns its JSON line and its
     * stderr.
     *
     * @param array<string, string> $ini
     * @param array<string, string> $env
     * @return array{0: array<string, mixed>, 1: string}
     */
    private static function page(string $id, string $what, array $ini = [], array $env = []): array
    {
        $proc = self::startPage($id, $what, $ini, $env);
        return self::finishPage($proc);
    }

    /**
     * @param array<string, string> $ini
     * @param array<string, string> $env
     * @return array{0: resource, 1: array<int, resource>}
     */
    private static function startPage(string $id, string $what, array $ini = [], array $env = []): array
    {
        $ini += [
            'auto_prepend_file' => dirname(__DIR__) . '/paddock-session.php',
            'session.use_cookies' => '0',
            'session.use_strict_mode' => '1',
            'display_errors' => 'stderr',
            'log_errors' => '0',
        ];
        $cmd = [PHP_BINARY];
        foreach ($ini as $k => $v) {
            $cmd[] = '-d';
            $cmd[] = "$k=$v";
        }
        $cmd[] = __DIR__ . '/fixtures/session-page.php';
        $cmd[] = $id;
        $cmd[] = $what;
        // TMPDIR: the leader file (SessionHandler::leaderFile) goes where this test's own would.
        $env += ['PADDOCK_HTTP_ENDPOINTS' => self::endpoints(), 'PATH' => (string) getenv('PATH'), 'TMPDIR' => sys_get_temp_dir()];
        $p = proc_open($cmd, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes, null, $env);
        if (!is_resource($p)) {
            self::fail('cannot start php');
        }
        return [$p, $pipes];
    }

    /**
     * @param array{0: resource, 1: array<int, resource>} $proc
     * @return array{0: array<string, mixed>, 1: string}
     */
    private static function finishPage(array $proc): array
    {
        [$p, $pipes] = $proc;
        $out = stream_get_contents($pipes[1]);
        $err = stream_get_contents($pipes[2]);
        fclose($pipes[1]);
        fclose($pipes[2]);
        $rc = proc_close($p);
        $r = json_decode((string) $out, true);
        if ($rc !== 0 || !is_array($r)) {
            self::fail("page exited $rc: stdout $out, stderr $err");
        }
        return [$r, $err];
    }

    public function testClientCalls(): void
    {
        $c = $this->client();
        $id = $c->createWebSession(6, 60000);
        $this->assertMatchesRegularExpression(self::idPattern(6), $id);
        $this->assertTrue($c->validateWebSession($id));
        $this->assertMatchesRegularExpression(self::idPattern(5), $c->createWebSession(5));
        $this->assertMatchesRegularExpression(self::idPattern(4), $c->createWebSession());

        $r = $c->readWebSession($id, true, 5000, 1000);
        $this->assertTrue($r['found']);
        $this->assertSame('1', $r['version']);
        $this->assertSame('', $r['data']);
        $this->assertSame(60000, $r['max_lifetime_ms']);
        $this->assertNotSame('0', $r['token']);
        $this->assertMatchesRegularExpression('/^[0-9]+$/', $r['token']);

        // A second locked read waits about as long as asked, then ABORTED.
        $start = hrtime(true);
        try {
            $c->readWebSession($id, true, 5000, 300);
            $this->fail('a locked session was locked again');
        } catch (AbortedException $e) {
            $this->assertSame(409, $e->getHttpStatus());
            $this->assertStringContainsString('locked', $e->getMessage());
        }
        $this->assertGreaterThanOrEqual(290, self::ms($start));
        $this->assertLessThan(300 + 1500, self::ms($start));
        // A write without the token is refused while the lock is held.
        try {
            $c->writeWebSession($id, 'x', '1');
            $this->fail('a write without the token went through a held lock');
        } catch (FailedPreconditionException $e) {
            $this->assertSame(412, $e->getHttpStatus());
        }

        // Binary data round-trips; the write releases the lock.
        $data = "n|i:1;\0\xff\xfe" . str_repeat('x', 1000);
        $this->assertSame('2', $c->writeWebSession($id, $data, '1', $r['token']));
        $r2 = $c->readWebSession($id, true, 5000, 1000);
        $this->assertSame($data, $r2['data']);
        $this->assertSame('2', $r2['version']);
        $this->assertNotSame($r['token'], $r2['token']);
        // A stale version is refused and changes nothing.
        try {
            $c->writeWebSession($id, 'stale', '1', $r2['token'], 0, true);
            $this->fail('a stale write was applied');
        } catch (FailedPreconditionException $e) {
            $this->assertSame(9, $e->getCode());
        }
        $this->assertSame($data, $c->readWebSession($id, false)['data']);
        // keep_lock keeps it; release gives it up once.
        $this->assertSame('3', $c->writeWebSession($id, 'kept', '2', $r2['token'], 0, true));
        $this->assertTrue($c->releaseWebSession($id, $r2['token']));
        $this->assertFalse($c->releaseWebSession($id, $r2['token']));
        // Touch changes no version.
        $this->assertTrue($c->touchWebSession($id));
        $this->assertSame('3', $c->readWebSession($id, false)['version']);

        $this->assertTrue($c->destroyWebSession($id));
        $this->assertFalse($c->destroyWebSession($id));
        $this->assertFalse($c->validateWebSession($id));
        $this->assertFalse($c->touchWebSession($id));
        $gone = $c->readWebSession($id, false);
        $this->assertFalse($gone['found']);
        $this->assertSame('0', $gone['version']);

        // Ids outside PHP's grammar: refused by the client (a "." would
        // change the URL) and by the cluster.
        foreach (['', 'a.b', '..', 'a/b', str_repeat('a', 257)] as $bad) {
            try {
                $c->validateWebSession($bad);
                $this->fail("id \"$bad\" was accepted");
            } catch (\InvalidArgumentException $e) {
                $this->assertStringContainsString('bad web session id', $e->getMessage());
            }
        }
        try {
            $c->call('GET', '/v1/web-sessions/a%21b');
            $this->fail('the cluster accepted id "a!b"');
        } catch (InvalidArgumentException $e) {
            $this->assertSame(400, $e->getHttpStatus());
        }
    }

    public function testHandlerLockSerialises(): void
    {
        $c = $this->client();
        $id = $c->createWebSession();
        $a = $this->handler(['lock_ttl_ms' => 10000, 'wait_ms' => 300]);
        $b = $this->handler(['lock_ttl_ms' => 10000, 'wait_ms' => 5000]);

        $this->assertTrue($a->open('/var/lib/php/sessions', 'PHPSESSID'));
        $this->assertSame('', $a->read($id));
        $this->assertNotSame('0', $a->lockToken());

        // b waits for a's lock: a's write wakes it, and it reads a's data.
        $waiter = self::startPage($id, 'read_and_close', [], ['PADDOCK_SESSION_WAIT' => '10']);
        // Give it time to start waiting (if it has not, it reads after
        // the write: the checks below hold either way).
        usleep(300000);
        $wrote = hrtime(true);
        $this->assertTrue($a->write($id, 'n|i:7;'));
        $this->assertSame('0', $a->lockToken());
        [$r, $err] = self::finishPage($waiter);
        $this->assertTrue($r['started'], $err);
        $this->assertSame(7, $r['n']);
        $this->assertLessThan(3000, self::ms($wrote), 'the waiting page was not woken by the write');
        $this->assertTrue($a->close());

        // A lock that is not released in time: read fails with a warning.
        $this->assertSame('n|i:7;', $b->read($id));
        [$got, $warnings] = self::quiet(function () use ($a, $id) {
            return $a->read($id);
        });
        $this->assertFalse($got);
        $this->assertCount(1, $warnings);
        $this->assertStringContainsString('another request held its lock for more than 300 ms', $warnings[0]);
        $this->assertStringNotContainsString($id, $warnings[0]);
        // The reader that failed writes nothing.
        [$ok, $warnings] = self::quiet(function () use ($a, $id) {
            return $a->write($id, 'lost');
        });
        $this->assertFalse($ok);
        $this->assertStringContainsString('not read by this request', $warnings[0] ?? '');
        $this->assertTrue($b->updateTimestamp($id, 'n|i:7;'));
        $this->assertSame('2', $c->readWebSession($id, false)['version']);
    }

    public function testValidateTakesTheLock(): void
    {
        // PHP (strict mode) calls validateId, then read, on the same id:
        // validateId takes the lock and reads, read returns what it read.
        $c = $this->client();
        $id = $c->createWebSession();
        $h = $this->handler(['lock_ttl_ms' => 10000, 'wait_ms' => 300]);
        $other = $c->readWebSession($id, true, 10000, 1000);
        // A busy session exists (it is not replaced by a new id); the read
        // then fails with the lock's warning.
        $this->assertTrue($h->validateId($id));
        [$got, $warnings] = self::quiet(function () use ($h, $id) {
            return $h->read($id);
        });
        $this->assertFalse($got);
        $this->assertStringContainsString('another request held its lock for more than 300 ms', $warnings[0] ?? '');
        $this->assertTrue($h->close());
        $c->releaseWebSession($id, $other['token']);

        $this->assertTrue($h->validateId($id));
        $this->assertNotSame('0', $h->lockToken());
        $this->assertSame('', $h->read($id));
        $this->assertTrue($h->write($id, 'x'));
        $this->assertSame('2', $h->version());
        $this->assertTrue($h->close());
        $this->assertNotSame('0', $c->readWebSession($id, true, 1000, 1)['token'], 'lock left held');

        // An unknown id: false, and its lock is not left held.
        $unknown = self::unique('unknown');
        $this->assertFalse($h->validateId($unknown));
        $this->assertSame('0', $h->lockToken());
        $this->assertNotSame('0', $c->readWebSession($unknown, true, 1000, 1)['token'], 'lock left held');
    }

    public function testHandlerStaleWriteRefused(): void
    {
        $c = $this->client();
        $id = $c->createWebSession();
        // a's lease runs out; b takes the lock and writes; a's write is refused.
        $a = $this->handler(['lock_ttl_ms' => 300]);
        $b = $this->handler(['lock_ttl_ms' => 5000, 'wait_ms' => 5000]);
        $this->assertSame('', $a->read($id));
        $this->assertSame('', $b->read($id));
        $this->assertTrue($b->write($id, 'b'));
        [$ok, $warnings] = self::quiet(function () use ($a, $id) {
            return $a->write($id, 'a');
        });
        $this->assertFalse($ok);
        $this->assertStringContainsString('the session was not saved', $warnings[0] ?? '');
        $this->assertTrue($a->close());
        $this->assertSame('b', $c->readWebSession($id, false)['data']);
    }

    public function testUnchangedPageWritesNothing(): void
    {
        $c = $this->client();
        $id = $c->createWebSession();
        $h = $this->handler();
        $this->assertSame('', $h->read($id));
        $this->assertTrue($h->write($id, 'x'));
        $this->assertTrue($h->close());
        $v = $c->readWebSession($id, false)['version'];
        // session.lazy_write off: write() with the data read is a touch.
        $this->assertSame('x', $h->read($id));
        $this->assertTrue($h->write($id, 'x'));
        $this->assertTrue($h->close());
        // lazy_write on: updateTimestamp.
        $this->assertSame('x', $h->read($id));
        $this->assertTrue($h->updateTimestamp($id, 'x'));
        $this->assertTrue($h->close());
        // read_and_close: close releases.
        $this->assertSame('x', $h->read($id));
        $this->assertTrue($h->close());
        $this->assertSame($v, $c->readWebSession($id, false)['version']);
        // Nothing is left locked.
        $this->assertNotSame('0', $c->readWebSession($id, true, 1000, 1)['token']);
    }

    public function testHandlerNoNode(): void
    {
        $h = $this->handler([], self::newClient('127.0.0.1:1', ['timeout_ms' => 300]));
        $start = hrtime(true);
        [$got, $warnings] = self::quiet(static function () use ($h) {
            return $h->read('abc');
        });
        $this->assertFalse($got);
        $this->assertLessThan(3000, self::ms($start));
        $this->assertStringContainsString('no Paddock node answered', $warnings[0] ?? '');
        // The request's later calls fail at once.
        $start = hrtime(true);
        [$id, $warnings] = self::quiet(static function () use ($h) {
            return $h->create_sid();
        });
        $this->assertMatchesRegularExpression(self::idPattern((int) ini_get('session.sid_bits_per_character')), $id);
        $this->assertFalse($h->validateId('abc'));
        [$ok] = self::quiet(static function () use ($h) {
            return $h->write('abc', 'x');
        });
        $this->assertFalse($ok);
        $this->assertLessThan(100, self::ms($start));
        $this->assertSame(0, $h->gc(1440));
    }

    public function testPages(): void
    {
        // A page with no session: strict mode issues an id from the cluster.
        [$r, $err] = self::page('', 'inc', ['session.sid_bits_per_character' => '4']);
        $this->assertSame('', $err);
        $this->assertTrue($r['started']);
        $this->assertTrue($r['written']);
        $this->assertSame(1, $r['n']);
        $id = $r['id'];
        $this->assertMatchesRegularExpression(self::idPattern(4), $id);
        [$r, $err] = self::page($id, 'inc');
        $this->assertSame([$id, 2, true], [$r['id'], $r['n'], $r['bin_ok']], $err);

        // Strict mode refuses an id the cluster never issued.
        [$r, $err] = self::page('neverissued123', 'inc');
        $this->assertSame('', $err);
        $this->assertNotSame('neverissued123', $r['id']);
        $this->assertSame(1, $r['n']);
        $this->assertFalse($this->client()->validateWebSession('neverissued123'));

        // read_and_close releases at once and writes nothing.
        [$r, $err] = self::page($id, 'read_and_close');
        $this->assertSame([true, 2], [$r['started'], $r['n']], $err);

        // session_regenerate_id(true): the old session is gone, the data
        // moved.
        [$r, $err] = self::page($id, 'regenerate', ['session.sid_bits_per_character' => '6']);
        $this->assertSame('', $err);
        $this->assertTrue($r['regenerated']);
        $this->assertTrue($r['written']);
        $new = $r['id'];
        $this->assertMatchesRegularExpression(self::idPattern(6), $new);
        $c = $this->client();
        $this->assertFalse($c->validateWebSession($id));
        $this->assertTrue($c->validateWebSession($new));
        [$r, $err] = self::page($new, 'inc');
        $this->assertSame([$new, 4], [$r['id'], $r['n']], $err);

        // session_destroy.
        [$r, $err] = self::page($new, 'destroy');
        $this->assertTrue($r['destroyed'], $err);
        $this->assertFalse($c->validateWebSession($new));

        // Concurrent pages on one session: every increment counts.
        [$r] = self::page('', 'inc');
        $id = $r['id'];
        $procs = [];
        for ($i = 0; $i < 12; $i++) {
            $procs[] = self::startPage($id, 'inc');
        }
        foreach ($procs as $p) {
            [$r, $err] = self::finishPage($p);
            $this->assertTrue($r['started'] && $r['written'], $err);
        }
        [$r] = self::page($id, 'read_and_close');
        $this->assertSame(13, $r['n']);
    }

    public function testPageNoNode(): void
    {
        [$r, $err] = self::page('abc', 'inc', [], ['PADDOCK_HTTP_ENDPOINTS' => '127.0.0.1:1']);
        $this->assertFalse($r['started']);
        $this->assertStringContainsString('paddock session: cannot read the session: no Paddock node answered', $err);
    }

    public function testSettings(): void
    {
        $none = static function (string $n) {
            return false;
        };
        $s = SessionHandler::settings($none, $none);
        $this->assertSame(['endpoints' => '127.0.0.1:2282', 'lock_ttl_ms' => 30000, 'wait_ms' => 30000,
            'mode' => 'write-through', 'follow_leader' => true, 'persistent' => true, 'warnings' => []], $s);

        $env = ['PADDOCK_HTTP_ENDPOINTS' => 'a:1,b:2', 'PADDOCK_SESSION_LOCK_TTL' => '3', 'PADDOCK_SESSION_WAIT' => 'soon'];
        $ini = ['paddock.endpoints' => 'c:3', 'paddock.session_lock_ttl' => '9', 'paddock.session_wait' => '0.5',
            'paddock.session_mode' => 'delayed'];
        $s = SessionHandler::settings(static function (string $n) use ($env) {
            return $env[$n] ?? false;
        }, static function (string $n) use ($ini) {
            return $ini[$n] ?? false;
        });
        $this->assertSame('a:1,b:2', $s['endpoints']);
        $this->assertSame(3000, $s['lock_ttl_ms']);
        $this->assertSame(500, $s['wait_ms']);
        $this->assertSame('delayed', $s['mode']);
        $this->assertCount(1, $s['warnings']);
        $this->assertStringContainsString('PADDOCK_SESSION_WAIT="soon"', $s['warnings'][0]);

        // The environment's mode wins; a bad one is left for php.ini's.
        foreach ([['Write-Through', 'write-through', 0], ['later', 'delayed', 1]] as [$v, $want, $warnings]) {
            $s = SessionHandler::settings(static function (string $n) use ($v) {
                return $n === 'PADDOCK_SESSION_MODE' ? $v : false;
            }, static function (string $n) use ($ini) {
                return $ini[$n] ?? false;
            });
            $this->assertSame($want, $s['mode'], $v);
            $this->assertCount($warnings, $s['warnings'], $v);
        }

        // Following the leader and kept connections: on by default, off
        // with off/0/no/false.
        foreach (['follow_leader' => 'PADDOCK_SESSION_FOLLOW_LEADER', 'persistent' => 'PADDOCK_SESSION_PERSISTENT'] as $key => $name) {
            foreach ([['off', false, 0], ['0', false, 0], ['On', true, 0], ['maybe', true, 1]] as [$v, $want, $warnings]) {
                $s = SessionHandler::settings(static function (string $n) use ($v, $name) {
                    return $n === $name ? $v : false;
                }, $none);
                $this->assertSame($want, $s[$key], "$name=$v");
                $this->assertCount($warnings, $s['warnings'], "$name=$v");
            }
        }
        $s = SessionHandler::settings($none, static function (string $n) {
            return $n === 'paddock.session_persistent' ? 'off' : false;
        });
        $this->assertFalse($s['persistent']);

        foreach (['0', '-1', '601', '1e3'] as $bad) {
            $s = SessionHandler::settings(static function (string $n) use ($bad) {
                return $n === 'PADDOCK_SESSION_LOCK_TTL' ? $bad : false;
            }, $none);
            $this->assertSame(30000, $s['lock_ttl_ms'], $bad);
            $this->assertCount(1, $s['warnings'], $bad);
        }
    }

    /**
     * The delayed write: the handler's write is answered before the
     * commit and the next read sees it at once; concurrent pages with
     * PADDOCK_SESSION_MODE=delayed count exactly.
     */
    public function testDelayedMode(): void
    {
        $h = $this->handler(['mode' => SessionHandler::MODE_DELAYED]);
        $this->assertSame(SessionHandler::MODE_DELAYED, $h->mode());
        $c = $this->client();
        $id = $c->createWebSession(4, 0);
        $this->assertSame('', $h->read($id));
        $this->assertTrue($h->write($id, 'n|i:1;'));
        $this->assertSame('2', $h->version());
        $this->assertTrue($h->close());
        $r = $c->readWebSession($id, false);
        $this->assertSame(['n|i:1;', '2'], [$r['data'], $r['version']]);
        $this->assertSame('n|i:1;', $h->read($id));
        $this->assertTrue($h->write($id, 'n|i:2;'));
        $this->assertTrue($h->close());

        [$r, $err] = self::page('', 'inc', [], ['PADDOCK_SESSION_MODE' => 'delayed']);
        $this->assertSame('', $err);
        $this->assertTrue($r['started'] && $r['written']);
        $id = $r['id'];
        $procs = [];
        for ($i = 0; $i < 16; $i++) {
            $procs[] = self::startPage($id, 'inc', [], ['PADDOCK_SESSION_MODE' => 'delayed']);
        }
        foreach ($procs as $p) {
            [$r, $err] = self::finishPage($p);
            $this->assertSame('', $err);
            $this->assertTrue($r['started'] && $r['written'], $err);
        }
        [$r, $err] = self::page($id, 'read_and_close', ['paddock.session_mode' => 'delayed']);
        $this->assertSame([true, 17], [$r['started'], $r['n']], $err);
        // Committed shortly after: a write-through write at the version
        // read orders after the delayed ones and applies.
        $r = $c->readWebSession($id, true);
        $this->assertSame((string) ((int) $r['version'] + 1), $c->writeWebSession($id, $r['data'], $r['version'], $r['token']));

        $this->expectException(\InvalidArgumentException::class);
        $this->handler(['mode' => 'later']);
    }
}
