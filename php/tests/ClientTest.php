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
        $c = new Client(self::deadEndpoint(), ['timeout_ms' => 200, 'margin_ms' => 100]);
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
        $c = new Client([self::deadEndpoint(), self::deadEndpoint()], ['timeout_ms' => 700]);
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
        $c = new Client([stream_socket_get_name($s, false)], ['margin_ms' => 200]);
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
        $c = new Client(array_merge([$hung], explode(',', self::endpoints())), ['attempt_timeout_ms' => 500]);
        $start = hrtime(true);
        $path = $c->create('/' . self::unique('hung'), 'z');
        $this->assertLessThan(500 + 1000, self::ms($start), 'the call did not leave the hung node after attempt_timeout_ms');
        $this->assertSame('z', $c->get($path)['data']);

        $only = new Client([$hung], ['attempt_timeout_ms' => 300, 'timeout_ms' => 700]);
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
        $c = new Client(array_merge([self::deadEndpoint()], explode(',', self::endpoints())));
        $path = $c->create('/' . self::unique('failover'), 'x');
        $this->assertNotEmpty($c->servedBy());
        $this->assertSame('x', $c->get($path)['data']);
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
            $stay = new Client($ordered);
            $stay->validateWebSession('a');
            $first = $stay->servedBy();
            $this->assertNotSame($leader['id'], $first);
            $stay->validateWebSession('a');
            $this->assertSame($first, $stay->servedBy(), 'a client without follow_leader moved');

            $c = new Client($ordered, ['follow_leader' => true, 'leader_file' => $file]);
            $c->validateWebSession('a');
            $this->assertSame($first, $c->servedBy());
            $c->validateWebSession('a');
            $this->assertSame($leader['id'], $c->servedBy(), 'the second call did not go to the leader');
            $this->assertSame($leader['http_addr'], file_get_contents($file));

            $next = new Client($ordered, ['follow_leader' => true, 'leader_file' => $file]);
            $next->validateWebSession('a');
            $this->assertSame($leader['id'], $next->servedBy(), 'the next client did not start at the leader of the file');

            file_put_contents($file, '10.255.255.1:9');
            $odd = new Client($ordered, ['follow_leader' => true, 'leader_file' => $file]);
            $odd->validateWebSession('a');
            $this->assertSame($first, $odd->servedBy(), 'an address not in the list was used');
            $this->assertSame($leader['http_addr'], file_get_contents($file), 'the file was not corrected');

            // A leader a client could not reach is avoided until the
            // time the file gives, then followed again.
            file_put_contents($file, 'avoid ' . $leader['http_addr'] . ' ' . (time() + 60));
            $avoiding = new Client($ordered, ['follow_leader' => true, 'leader_file' => $file]);
            $avoiding->validateWebSession('a');
            $avoiding->validateWebSession('a');
            $this->assertSame($first, $avoiding->servedBy(), 'followed a leader the file says to avoid');
            file_put_contents($file, 'avoid ' . $leader['http_addr'] . ' ' . (time() - 1));
            $again = new Client($ordered, ['follow_leader' => true, 'leader_file' => $file]);
            $again->validateWebSession('a');
            $again->validateWebSession('a');
            $this->assertSame($leader['id'], $again->servedBy(), 'did not follow the leader once the avoidance ended');

            // The file sends the client to an endpoint that is down: it
            // fails over, and the file ends naming the leader.
            $dead = self::deadEndpoint();
            file_put_contents($file, $dead);
            $over = new Client(array_merge([$dead], $ordered), ['follow_leader' => true, 'leader_file' => $file]);
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
            $named = new Client($byName, ['follow_leader' => true, 'leader_file' => $file]);
            $named->validateWebSession('a');
            $this->assertSame($leader['id'], $named->servedBy(), 'did not start at the endpoint the file named');
            $this->assertSame('', file_get_contents($file), 'a leader not in the list left the file as it was');
        } finally {
            if (is_file($file)) {
                unlink($file);
            }
        }
        $this->expectException(\InvalidArgumentException::class);
        new Client($eps, ['follow_leader' => 'yes']);
    }

    public function testFailoverOnUnavailable(): void
    {
        // A node with no leader answers a poll 503 UNAVAILABLE "no leader".
        $lone = getenv('PADDOCK_TEST_NO_LEADER_ENDPOINT');
        if ($lone === false || $lone === '') {
            $this->markTestSkipped('set PADDOCK_TEST_NO_LEADER_ENDPOINT to the HTTP address of a node without a leader (e2e/php_test.go does)');
        }
        $only = new Client([$lone]);
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
        $both = new Client(array_merge([$lone], explode(',', self::endpoints())));
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
