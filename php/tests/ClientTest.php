<?php

declare(strict_types=1);

namespace Paddock\Tests;

use Paddock\Client;
use Paddock\Exception\AlreadyExistsException;
use Paddock\Exception\FailedPreconditionException;
use Paddock\Exception\InvalidArgumentException;
use Paddock\Exception\NotFoundException;
use Paddock\Exception\PaddockException;
use Paddock\Exception\SessionExpiredException;
use Paddock\Exception\TimeoutException;
use Paddock\Exception\UnavailableException;
use Paddock\Lease;

final class ClientTest extends ClusterTestCase
{
    /** deadEndpoint is a loopback address nothing listens on. */
    private static function deadEndpoint(): string
    {
        $s = stream_socket_server('tcp://127.0.0.1:0');
        $addr = stream_socket_get_name($s, false);
        fclose($s);
        return $addr;
    }

    public function testEndpoints(): void
    {
        $c = new Client(['127.0.0.1:1', 'http://10.0.0.1:2282/', ' https://h:3 ']);
        $this->assertSame(['http://127.0.0.1:1', 'http://10.0.0.1:2282', 'https://h:3'], $c->endpoints());
        $this->assertSame(['http://a:1', 'http://b:2'], (new Client('a:1,b:2'))->endpoints());

        $saved = getenv(Client::ENDPOINTS_ENV);
        try {
            putenv(Client::ENDPOINTS_ENV . '=x:1, y:2');
            $this->assertSame(['http://x:1', 'http://y:2'], (new Client())->endpoints());
            putenv(Client::ENDPOINTS_ENV);
            $this->assertSame(['http://127.0.0.1:2282'], (new Client())->endpoints());
        } finally {
            putenv($saved === false ? Client::ENDPOINTS_ENV : Client::ENDPOINTS_ENV . '=' . $saved);
        }
    }

    public function testBadOptions(): void
    {
        $this->expectException(\InvalidArgumentException::class);
        new Client('a:1', ['timeout_ms' => 0]);
    }

    /**
     * testDotNamesRefused: "." and ".." are neither election or lock
     * names nor znode names; in a URL they are path segments that curl
     * resolves, so they are refused before anything is sent, as a name
     * with '/' is.
     */
    public function testDotNamesRefused(): void
    {
        $c = self::newClient(self::deadEndpoint(), ['timeout_ms' => 200, 'margin_ms' => 100]);
        foreach (['.', '..'] as $name) {
            foreach ([
                static function () use ($c, $name) { $c->campaign($name, '1', '', 100); },
                static function () use ($c, $name) { $c->leader($name); },
                static function () use ($c, $name) { $c->resign($name, '1'); },
                static function () use ($c, $name) { $c->acquire($name, '1', 1, 100); },
                static function () use ($c, $name) { $c->release($name, '1'); },
                static function () use ($c, $name) { $c->getLock($name); },
            ] as $i => $call) {
                try {
                    $call();
                    $this->fail("call $i with name \"$name\" did not throw");
                } catch (\InvalidArgumentException $e) {
                    $this->assertStringContainsString('bad name', $e->getMessage());
                }
            }
        }
        // In a tree path, curl would resolve them: "/a/x/../b" would write
        // "/a/b" rather than fail.
        foreach (['/a/x/../b', '/a/./b', '/..', '/a/..'] as $path) {
            foreach ([
                static function () use ($c, $path) { $c->create($path, 'x'); },
                static function () use ($c, $path) { $c->set($path, 'x'); },
                static function () use ($c, $path) { $c->delete($path, ['recursive' => true]); },
                static function () use ($c, $path) { $c->get($path); },
            ] as $i => $call) {
                try {
                    $call();
                    $this->fail("call $i with path \"$path\" did not throw");
                } catch (\InvalidArgumentException $e) {
                    $this->assertStringContainsString('bad path', $e->getMessage());
                }
            }
        }
    }

    public function testCmpUint(): void
    {
        $this->assertSame(1, Client::cmpUint('18446744073709551615', '9223372036854775807'));
        $this->assertSame(-1, Client::cmpUint('9', '10'));
        $this->assertSame(0, Client::cmpUint('007', '7'));
    }

    public function testNoNodeReachable(): void
    {
        $c = self::newClient([self::deadEndpoint(), self::deadEndpoint()], ['timeout_ms' => 700]);
        $start = hrtime(true);
        try {
            $c->create('/x');
            $this->fail('create through dead endpoints succeeded');
        } catch (UnavailableException $e) {
            $this->assertStringContainsString('no node available', $e->getMessage());
            $this->assertSame(14, $e->getCode());
        }
        $ms = self::ms($start);
        $this->assertGreaterThanOrEqual(600, $ms, 'gave up before its time: retries stop too early');
        $this->assertLessThan(700 + 1000, $ms, 'blocked longer than timeout_ms');
    }

    public function testHungNodeTimesOut(): void
    {
        // A socket that accepts connections (the kernel does) and never answers.
        $s = stream_socket_server('tcp://127.0.0.1:0');
        $c = self::newClient([stream_socket_get_name($s, false)], ['margin_ms' => 200]);
        $start = hrtime(true);
        try {
            $c->pollLeader('e', null, 300);
            $this->fail('poll of a hung node returned');
        } catch (TimeoutException $e) {
            $this->assertStringContainsString('no answer within 500 ms', $e->getMessage());
        }
        $ms = self::ms($start);
        $this->assertGreaterThanOrEqual(450, $ms);
        $this->assertLessThan(500 + 1000, $ms, 'a long poll blocked longer than its wait + margin');
        fclose($s);
    }

    public function testHungNodeFailsOver(): void
    {
        $s = stream_socket_server('tcp://127.0.0.1:0');
        $hung = stream_socket_get_name($s, false);
        $c = self::newClient(array_merge([$hung], explode(',', self::endpoints())), ['attempt_timeout_ms' => 500]);
        $start = hrtime(true);
        $path = $c->create('/' . self::unique('hung'), 'z');
        $this->assertLessThan(500 + 1000, self::ms($start), 'the call did not leave the hung node after attempt_timeout_ms');
        $this->assertSame('z', $c->get($path)['data']);

        $only = self::newClient([$hung], ['attempt_timeout_ms' => 300, 'timeout_ms' => 700]);
        $start = hrtime(true);
        try {
            $only->get('/');
            $this->fail('a read from a hung node returned');
        } catch (TimeoutException $e) {
            $this->assertStringContainsString('no answer within 700 ms', $e->getMessage());
        }
        $this->assertLessThan(700 + 1000, self::ms($start));
        fclose($s);
    }

    public function testFailoverOnConnectionError(): void
    {
        $c = self::newClient(array_merge([self::deadEndpoint()], explode(',', self::endpoints())));
        $path = $c->create('/' . self::unique('failover'), 'x');
        $this->assertNotEmpty($c->servedBy());
        $this->assertSame('x', $c->get($path)['data']);
    }

    /**
     * testKeptConnections: with persistent, calls go over one kept
     * connection per node, shared by the process's clients (as the next
     * PHP request's client would find it), error answers and long answers
     * (in chunks) included.
     */
    public function testKeptConnections(): void
    {
        $eps = explode(',', self::endpoints());
        $addr = preg_replace('#^https?://#', '', $eps[0]);
        $c = new Client([$eps[0]], ['persistent' => true, 'connect_timeout_ms' => 1500]);
        $path = $c->create('/' . self::unique('kept'), 'v');
        $first = self::kept($addr);
        $this->assertCount(1, $first, 'kept connections to ' . $addr);
        if (PHP_OS_FAMILY === 'Linux' && function_exists('socket_import_stream')) {
            // TCP_USER_TIMEOUT (18): a call on a kept connection to a dead
            // host fails within connect_timeout_ms.
            $kept = array_values(array_filter(get_resources('persistent stream'), static function ($r) use ($addr) {
                return stream_socket_get_name($r, true) === $addr;
            }));
            $this->assertSame(1500, socket_get_option(socket_import_stream($kept[0]), SOL_TCP, 18), 'TCP_USER_TIMEOUT');
        }

        $big = random_bytes(300000);
        $c->set($path, $big);
        $this->assertSame($big, $c->get($path)['data']);
        try {
            $c->get($path . '/none');
            $this->fail('get of a missing znode returned');
        } catch (NotFoundException $e) {
        }
        $c->delete($path);
        $this->assertSame($first, self::kept($addr), 'an error answer or a long one (in chunks) cost the kept connection');

        $next = new Client([$eps[0]], ['persistent' => true]);
        $this->assertFalse($next->exists($path));
        $this->assertSame($first, self::kept($addr), 'the next client did not use the kept connection');

        // A route that would break the request line, or smuggle a second
        // request onto the kept connection, is refused before it is sent.
        try {
            $c->call('GET', "/v1/tree HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/tree");
            $this->fail('a route with CR LF was sent');
        } catch (\InvalidArgumentException $e) {
        }
        $this->assertSame($first, self::kept($addr));
    }

    /**
     * testKeptConnectionFaults: what a node's side of a kept connection
     * may do. A connection closed while kept is replaced, once, on the
     * same node; a late answer is not read by the next call; a broken-off
     * answer is not taken for an answer; answers in chunks are read.
     */
    public function testKeptConnectionFaults(): void
    {
        try {
            $this->keptConnectionFaults();
        } finally {
            self::stopAll();
        }
    }

    private function keptConnectionFaults(): void
    {
        // A second server, "b", is where a call goes when it gives up on
        // the first: each answer says which server and connection.
        [$pb, $b] = self::httpServer('plain', 'b');

        [$p, $a] = self::httpServer('close-after-one', 'a');
        $c = new Client([$a, $b], ['persistent' => true]);
        $this->assertSame(['server' => 'a', 'conn' => 1, 'req' => 1], $c->call('POST', '/x', [], ['a' => 1]));
        $this->assertSame(['server' => 'a', 'conn' => 2, 'req' => 1], $c->call('GET', '/x'), 'a kept connection the server closed was not replaced on the same server');
        $this->assertSame(['server' => 'a', 'conn' => 2, 'req' => 2], $c->call('PUT', '/x', [], ['a' => 2]));
        self::stop($p);

        [$p, $a] = self::httpServer('late', 'a');
        $c = new Client([$a], ['persistent' => true, 'attempt_timeout_ms' => 300, 'timeout_ms' => 400]);
        try {
            $c->call('GET', '/x');
            $this->fail('an answer later than the call time was taken');
        } catch (TimeoutException $e) {
        }
        usleep(600000); // the late answer is sent (to the connection the client closed)
        $next = new Client([$a], ['persistent' => true]); // as the next PHP request's: PHP keeps the connections
        $this->assertSame(['server' => 'a', 'conn' => 2, 'req' => 1], $next->call('GET', '/x'), 'the next call read the late answer');
        self::stop($p);

        // A PHP request that died in the middle of a call (a fatal error)
        // leaves its answer on the kept connection: the next request's
        // client does not read it.
        [$p, $a] = self::httpServer('plain', 'a');
        $fp = stream_socket_client("tcp://$a", $errno, $errstr, 1, STREAM_CLIENT_CONNECT | STREAM_CLIENT_PERSISTENT);
        fwrite($fp, "GET /dead HTTP/1.1\r\nHost: $a\r\n\r\n");
        $next = new Client([$a], ['persistent' => true]);
        self::eventually(5000, 'the dead request\'s answer', static function () use ($fp): bool {
            $r = [$fp];
            $w = $e = null;
            return stream_select($r, $w, $e, 0) === 1;
        });
        $this->assertSame(['server' => 'a', 'conn' => 2, 'req' => 1], $next->call('GET', '/x'), 'a call read the answer of a request that died');
        self::stop($p);

        // A broken-off answer is a failed attempt, as when no answer
        // came: the call goes on to the next node.
        [$p, $a] = self::httpServer('truncated', 'a');
        $c = new Client([$a, $b], ['persistent' => true]);
        $r = $c->call('PUT', '/x', [], ['a' => 1]);
        $this->assertSame('b', $r['server'], 'a broken-off answer was taken, or retried on its server');
        self::stop($p);

        [$p, $a] = self::httpServer('chunked', 'a');
        $c = new Client([$a], ['persistent' => true]);
        $this->assertSame(['server' => 'a', 'conn' => 1, 'req' => 1], $c->call('GET', '/x'));
        $this->assertSame(['server' => 'a', 'conn' => 1, 'req' => 2], $c->call('GET', '/x'), 'the chunked answer was not read to its end');
        self::stop($p);
        self::stop($pb);
    }

    /**
     * testKeptConnectionToSilentHost: a node's host that dies or is cut
     * off closes nothing; a call sent on its kept connection fails over
     * within about connect_timeout_ms (TCP_USER_TIMEOUT), as a new
     * connection's connect would, instead of waiting out a long poll.
     * It drops the first server's packets with iptables: root only (the
     * e2e test runs it as root, and leaves it out otherwise).
     *
     * @group iptables
     */
    public function testKeptConnectionToSilentHost(): void
    {
        $comment = 'paddock-phpunit';
        self::dropRules($comment); // left by an earlier run that died
        try {
            [, $b] = self::httpServer('plain', 'b');
            [, $a] = self::httpServer('plain', 'a');
            $c = new Client([$a, $b], ['persistent' => true, 'timeout_ms' => 20000]);
            $this->assertSame('a', $c->call('GET', '/x')['server']);
            $port = substr($a, strrpos($a, ':') + 1);
            // -w: wait for the xtables lock other tests' iptables may hold.
            exec("iptables -w -I INPUT -p tcp -i lo --dport $port -m comment --comment $comment -j DROP 2>&1", $out, $rc);
            $this->assertSame(0, $rc, 'iptables: ' . implode("\n", $out));
            $start = hrtime(true);
            // A long poll: without the limit, it would wait its 15 s.
            $r = $c->call('POST', '/x', [], [], 15000, null, 'wait_ms');
            $this->assertSame('b', $r['server']);
            $this->assertLessThan(6000, self::ms($start), 'the call did not leave the silent host in time');
        } finally {
            $left = self::dropRules($comment);
            self::stopAll();
        }
        $this->assertSame(0, $left, 'iptables rules left behind');
    }

    /** dropRules deletes the INPUT rules with $comment, and returns how many are left. */
    private static function dropRules(string $comment): int
    {
        exec('iptables -w -S INPUT 2>/dev/null', $rules);
        foreach ($rules as $rule) {
            if (strpos($rule, "--comment $comment") !== false && strncmp($rule, '-A ', 3) === 0) {
                exec('iptables -w -D ' . substr($rule, 3) . ' 2>&1');
            }
        }
        $rules = [];
        exec('iptables -w -S INPUT 2>/dev/null', $rules);
        return count(preg_grep('/--comment ' . preg_quote($comment, '/') . '/', $rules));
    }

    /** @var list<resource> fixture servers started by the test */
    private static $servers = [];

    /** @param resource $p */
    private static function stop($p): void
    {
        if (is_resource($p)) {
            proc_terminate($p, 9);
            proc_close($p);
        }
    }

    /** stopAll stops every fixture server the test started. */
    private static function stopAll(): void
    {
        foreach (self::$servers as $p) {
            self::stop($p);
        }
        self::$servers = [];
    }

    /** kept lists the local addresses of this process's kept connections to $addr. */
    private static function kept(string $addr): array
    {
        $out = [];
        foreach (get_resources('persistent stream') as $r) {
            if (stream_socket_get_name($r, true) === $addr) {
                $out[] = stream_socket_get_name($r, false);
            }
        }
        return $out;
    }

    /**
     * httpServer starts fixtures/http-server.php doing $what, named
     * $name, and returns its process and address.
     *
     * @return array{0: resource, 1: string}
     */
    private static function httpServer(string $what, string $name): array
    {
        // stderr to /dev/null: a server left running must not hold the
        // output the e2e test waits on.
        $p = proc_open([PHP_BINARY, __DIR__ . '/fixtures/http-server.php', $what, $name], [1 => ['pipe', 'w'], 2 => ['file', '/dev/null', 'w']], $pipes);
        self::$servers[] = $p;
        $addr = trim((string) fgets($pipes[1]));
        if ($addr === '') {
            self::fail('fixtures/http-server.php did not start');
        }
        return [$p, $addr];
    }

    /**
     * testFollowLeader: with follow_leader, the answer's Paddock-Leader
     * header moves the next call to the leader (when it is one of the
     * endpoints); with leader_file, the next client starts there; a
     * leader file naming an address not in the list is ignored, and
     * without the option the client stays where it is.
     */
    public function testFollowLeader(): void
    {
        $eps = explode(',', self::endpoints());
        // Each node registers its addresses itself, shortly after it
        // starts: wait for the leader's.
        $leader = null;
        self::eventually(10000, 'the leader registered one of the endpoints as its HTTP address', function () use ($eps, &$leader): bool {
            foreach ($this->client()->call('GET', '/v1/cluster/members')['members'] as $m) {
                if (($m['leader'] ?? false) && in_array($m['http_addr'] ?? '', $eps, true)) {
                    $leader = $m;
                    return true;
                }
            }
            return false;
        });
        // The endpoints with a follower first.
        $others = array_values(array_diff($eps, [$leader['http_addr']]));
        $ordered = array_merge($others, [$leader['http_addr']]);
        $file = sys_get_temp_dir() . '/' . self::unique('paddock-leader-test');
        try {
            $stay = self::newClient($ordered);
            $stay->validateWebSession('a');
            $first = $stay->servedBy();
            $this->assertNotSame($leader['id'], $first);
            $stay->validateWebSession('a');
            $this->assertSame($first, $stay->servedBy(), 'a client without follow_leader moved');

            $c = self::newClient($ordered, ['follow_leader' => true, 'leader_file' => $file]);
            $c->validateWebSession('a');
            $this->assertSame($first, $c->servedBy());
            $c->validateWebSession('a');
            $this->assertSame($leader['id'], $c->servedBy(), 'the second call did not go to the leader');
            $this->assertSame($leader['http_addr'], file_get_contents($file));

            $next = self::newClient($ordered, ['follow_leader' => true, 'leader_file' => $file]);
            $next->validateWebSession('a');
            $this->assertSame($leader['id'], $next->servedBy(), 'the next client did not start at the leader of the file');

            file_put_contents($file, '10.255.255.1:9');
            $odd = self::newClient($ordered, ['follow_leader' => true, 'leader_file' => $file]);
            $odd->validateWebSession('a');
            $this->assertSame($first, $odd->servedBy(), 'an address not in the list was used');
            $this->assertSame($leader['http_addr'], file_get_contents($file), 'the file was not corrected');

            // A leader a client could not reach is avoided until the
            // time the file gives, then followed again.
            file_put_contents($file, 'avoid ' . $leader['http_addr'] . ' ' . (time() + 60));
            $avoiding = self::newClient($ordered, ['follow_leader' => true, 'leader_file' => $file]);
            $avoiding->validateWebSession('a');
            $avoiding->validateWebSession('a');
            $this->assertSame($first, $avoiding->servedBy(), 'followed a leader the file says to avoid');
            file_put_contents($file, 'avoid ' . $leader['http_addr'] . ' ' . (time() - 1));
            $again = self::newClient($ordered, ['follow_leader' => true, 'leader_file' => $file]);
            $again->validateWebSession('a');
            $again->validateWebSession('a');
            $this->assertSame($leader['id'], $again->servedBy(), 'did not follow the leader once the avoidance ended');

            // The file sends the client to an endpoint that is down: it
            // fails over, and the file ends naming the leader.
            $dead = self::deadEndpoint();
            file_put_contents($file, $dead);
            $over = self::newClient(array_merge([$dead], $ordered), ['follow_leader' => true, 'leader_file' => $file]);
            $over->validateWebSession('a');
            $over->validateWebSession('a');
            $this->assertSame($leader['id'], $over->servedBy());
            $this->assertSame($leader['http_addr'], file_get_contents($file));

            // The leader's address written otherwise in the list: never
            // matched, and a file naming a listed endpoint is emptied
            // once an answer names a leader not in the list.
            $byName = array_map(static function (string $ep): string {
                return str_replace('127.0.0.1:', 'localhost:', $ep);
            }, $ordered);
            file_put_contents($file, end($byName));
            $named = self::newClient($byName, ['follow_leader' => true, 'leader_file' => $file]);
            $named->validateWebSession('a');
            $this->assertSame($leader['id'], $named->servedBy(), 'did not start at the endpoint the file named');
            $this->assertSame('', file_get_contents($file), 'a leader not in the list left the file as it was');
        } finally {
            if (is_file($file)) {
                unlink($file);
            }
        }
        $this->expectException(\InvalidArgumentException::class);
        self::newClient($eps, ['follow_leader' => 'yes']);
    }

    public function testFailoverOnUnavailable(): void
    {
        // A node with no leader answers a poll 503 UNAVAILABLE "no leader".
        $lone = getenv('PADDOCK_TEST_NO_LEADER_ENDPOINT');
        if ($lone === false || $lone === '') {
            $this->markTestSkipped('set PADDOCK_TEST_NO_LEADER_ENDPOINT to the HTTP address of a node without a leader (e2e/php_test.go does)');
        }
        $only = self::newClient([$lone]);
        $start = hrtime(true);
        try {
            $only->poll('/', '0', 300);
            $this->fail('a node without a leader answered a poll');
        } catch (UnavailableException $e) {
            $this->assertStringContainsString('no leader', $e->getMessage());
        }
        $this->assertLessThan(300 + $only->marginMs() + 1000, self::ms($start), 'retrying 503s outlasted the poll\'s wait + margin');
        $loneId = $only->servedBy();
        $this->assertNotEmpty($loneId);

        $c = $this->client();
        $dir = '/' . self::unique('poll');
        $c->create($dir);
        $zxid = $c->get($dir)['header']['zxid'];
        $c->create("$dir/a", 'x');
        $both = self::newClient(array_merge([$lone], explode(',', self::endpoints())));
        $r = $both->poll($dir, $zxid, 5000, ['recursive' => true]);
        $this->assertNotSame($loneId, $both->servedBy());
        $created = array_filter($r['events'], static function (array $e): bool {
            return $e['kind'] === 'EVENT_KIND_CREATED';
        });
        $this->assertSame(["$dir/a"], array_column($created, 'path'), 'events: ' . json_encode($r['events']));
    }

    public function testIdempotencyKey(): void
    {
        $c = $this->client();
        $dir = '/' . self::unique('idem');
        $c->create($dir);
        $key = Client::newRequestId();
        $body = ['sequential' => true, 'data' => base64_encode('job')];
        $first = $c->call('POST', "/v1/tree$dir/job-", [], $body, null, $key);
        $again = $c->call('POST', "/v1/tree$dir/job-", [], $body, null, $key);
        $this->assertSame($first['path'], $again['path'], 'a repeated request id was applied twice');
        $this->assertSame($first['header']['zxid'], $again['header']['zxid']);
        $this->assertCount(1, $c->children($dir));
        // Every write gets its own key: two creates make two znodes.
        $c->create("$dir/job-", '', ['sequential' => true]);
        $this->assertCount(2, $c->children($dir));
    }

    public function testTree(): void
    {
        $c = $this->client();
        $root = '/' . self::unique('tree');
        $this->assertFalse($c->exists($root));
        $this->assertSame($root, $c->create($root, "bin\0ary\xff"));
        $got = $c->get($root);
        $this->assertSame("bin\0ary\xff", $got['data']);
        $this->assertSame(0, $got['stat']['version']);
        $this->assertNotEmpty($c->servedBy());
        $zxid = $c->lastZxid();

        $stat = $c->set($root, 'v1', ['version' => 0]);
        $this->assertSame(1, $stat['version']);
        $this->assertSame(1, Client::cmpUint($c->lastZxid(), $zxid), 'lastZxid did not advance with a write');
        $c->create("$root/b");
        $c->create("$root/a");
        $q = $c->create("$root/q-", '', ['sequential' => true]);
        $this->assertMatchesRegularExpression('#^' . preg_quote($root) . '/q-[0-9]{10}$#', $q);
        $this->assertSame(['a', 'b', basename($q)], $c->children($root));
        $this->assertTrue($c->exists("$root/a"));
        $this->assertSame('', $c->get("$root/a", ['consistency' => 'serializable'])['data']);

        try {
            $c->set($root, 'v2', ['version' => 7]);
            $this->fail('set at a wrong version succeeded');
        } catch (FailedPreconditionException $e) {
            $this->assertSame(9, $e->getCode());
            $this->assertSame(412, $e->getHttpStatus());
            $this->assertStringContainsString('version does not match', $e->getMessage());
        }
        try {
            $c->create($root);
            $this->fail('create of an existing znode succeeded');
        } catch (AlreadyExistsException $e) {
            $this->assertSame(409, $e->getHttpStatus());
        }
        try {
            $c->get("$root/nope");
            $this->fail('get of a missing znode succeeded');
        } catch (NotFoundException $e) {
            $this->assertSame(5, $e->getCode());
            $this->assertSame("node does not exist: $root/nope", $e->getMessage());
            $this->assertNotEmpty($e->getServedBy());
        }
        try {
            $c->create('/paddock/mine');
            $this->fail('create under /paddock succeeded');
        } catch (InvalidArgumentException $e) {
            $this->assertSame(400, $e->getHttpStatus());
        }
        try {
            $c->delete($root);
            $this->fail('delete of a znode with children succeeded');
        } catch (FailedPreconditionException $e) {
            $this->assertStringContainsString('children', $e->getMessage());
        }
        $this->assertSame(4, $c->delete($root, ['recursive' => true]));
        $this->assertFalse($c->exists($root));
    }

    public function testLeaseOwnsEphemerals(): void
    {
        $c = $this->client();
        $lease = $this->lease($c, 10000);
        $this->assertMatchesRegularExpression('/^[0-9]+$/', $lease->id());
        $this->assertSame(10000, $lease->timeoutMs());
        $dir = '/' . self::unique('eph');
        $c->create($dir);
        $p = $c->create("$dir/w-", 'me', ['type' => 'ephemeral', 'sequential' => true, 'session' => $lease]);
        $this->assertSame($lease->id(), $c->get($p)['stat']['ephemeral_owner']);
        $this->assertFalse($lease->keepAliveIfDue(), 'renewed right after opening');
        $lease->keepAlive();
        $this->assertSame($lease->id(), $c->getSession($lease->id())['id']);

        $lease->close();
        $this->assertFalse($c->exists($p), 'closing the lease left its ephemeral');
        $lease->close(); // twice: not an error
        $this->expectException(SessionExpiredException::class);
        $lease->keepAlive();
    }

    public function testLeaseExpires(): void
    {
        $c = $this->client();
        $lease = $this->lease($c, 2000);
        $this->assertSame(2000, $lease->timeoutMs());
        $start = hrtime(true);
        $expired = false;
        self::eventually(2000 + 3000, 'the unrenewed session expires', static function () use ($c, $lease, &$expired): bool {
            try {
                $c->getSession($lease->id());
                return false;
            } catch (NotFoundException $e) {
                return $expired = true;
            }
        });
        $this->assertTrue($expired);
        $this->assertGreaterThanOrEqual(1900, self::ms($start), 'expired before its timeout');
        try {
            Lease::attach($c, $lease->id());
            $this->fail('attach to an expired session succeeded');
        } catch (SessionExpiredException $e) {
            $this->assertInstanceOf(PaddockException::class, $e);
        }
    }
}
