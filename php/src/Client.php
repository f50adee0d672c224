<?php

declare(strict_types=1);

namespace Paddock;

use Paddock\Exception\AbortedException;
use Paddock\Exception\AlreadyExistsException;
use Paddock\Exception\FailedPreconditionException;
use Paddock\Exception\FenceLostException;
use Paddock\Exception\InvalidArgumentException;
use Paddock\Exception\NotFoundException;
use Paddock\Exception\OutOfRangeException;
use Paddock\Exception\PaddockException;
use Paddock\Exception\SessionExpiredException;
use Paddock\Exception\TimeoutException;
use Paddock\Exception\UnavailableException;

/**
 * Client talks to a Paddock cluster over its HTTP/JSON API, with curl,
 * or (option persistent) over connections PHP keeps open from one
 * request to the next in the same worker process: see attemptKept.
 *
 * Endpoints: the constructor's list ("host:port" or URLs), else the
 * comma-separated PADDOCK_HTTP_ENDPOINTS, else 127.0.0.1:2282 (the local
 * node's default HTTP address: on a farm every web server runs a node).
 *
 * Following the leader (option follow_leader): an answer's
 * Paddock-Leader header names the leader's HTTP address; when that
 * address is one of the endpoints, the next call starts there, saving
 * the hop of a follower forwarding it (writes, locks and web sessions
 * are decided on the leader). With leader_file, the client also keeps
 * that address in a small file, so that the next PHP request's client
 * starts there too. It does not follow to an endpoint that failed during
 * its life, nor, for AVOID_S seconds, to a leader the file says a client
 * could not reach; a header naming an address not in the list empties
 * the file, and a 503 answer's header is not followed.
 *
 * Failover: a call starts at the endpoint that answered last. When it
 * cannot connect, gets no answer (within attempt_timeout_ms, 5 s by
 * default, for an ordinary call), or gets 503 (UNAVAILABLE: no leader, a
 * node shutting down or catching up), it tries the next endpoint, pausing
 * after each full round (100 ms, doubling up to 1 s), until the call's
 * time is up; then it throws UnavailableException (or TimeoutException
 * when the last attempt got no answer in time). Any other answer is the
 * cluster's: an error answer throws at once, typed by its gRPC code.
 *
 * Writes (POST, PUT, DELETE) carry an Idempotency-Key, one per call and
 * the same on every attempt, so a write retried on another node after an
 * attempt whose outcome is unknown is applied once.
 *
 * Time: a call never blocks the PHP process longer than its time: the
 * client's timeout_ms option (10 s by default) for ordinary calls, and
 * the wait asked for plus margin_ms (2 s by default) for the long polls
 * (Campaign, Acquire, pollLeader). Each attempt's curl timeout is what is
 * left of it, and a long poll retried on another node asks that node to
 * wait only what is left.
 *
 * Values (znode data, candidate values) are PHP strings: the client does
 * the JSON API's base64 both ways. 64-bit integers (zxids, session ids,
 * tokens) are strings, as the JSON API has them.
 */
final class Client
{
    /** DEFAULT_ENDPOINT is the local node's HTTP address (paddock agent --http-addr). */
    public const DEFAULT_ENDPOINT = '127.0.0.1:2282';

    /**
     * AVOID_S is how long, in seconds, clients sharing a leader file stop
     * following to a leader one of them could not reach.
     */
    public const AVOID_S = 30;

    /** ENDPOINTS_ENV is the environment variable read when no endpoints are given. */
    public const ENDPOINTS_ENV = 'PADDOCK_HTTP_ENDPOINTS';

    /** @var list<string> base URLs, without a trailing slash */
    private $endpoints;

    /** @var int index of the endpoint to try first */
    private $current = 0;

    /** @var int ordinary calls' time, all attempts included, in ms */
    private $timeoutMs;

    /** @var int added to a long poll's wait for its curl timeout, in ms */
    private $marginMs;

    /** @var int connect timeout of one attempt, in ms */
    private $connectTimeoutMs;

    /** @var int an ordinary call's attempt's time, in ms */
    private $attemptTimeoutMs;

    /** @var \CurlHandle|resource|null kept for its connection cache */
    private $curl;

    /** @var bool whether http:// endpoints are called over kept connections (option persistent) */
    private $persistent = false;

    /** @var array<string, resource> kept connections by "host:port" */
    private $sockets = [];

    /** @var array<int, resource> kept connections in the middle of a call, of any client of this request */
    private static $busy = [];

    /** @var bool whether closeBusy is registered for this request */
    private static $closesBusy = false;

    /** @var string|null Served-By of the last answer */
    private $servedBy;

    /** @var string highest zxid seen in a response header */
    private $lastZxid = '0';

    /** @var array<string, int>|null endpoint index by "host:port", when following the leader */
    private $byAddr;

    /** @var string|null file that keeps the leader's address between requests */
    private $leaderFile;

    /** @var string what $leaderFile holds, as read or last written ('' : nothing) */
    private $fileText = '';

    /** @var array<string, int> address => unix time until which not to follow to it */
    private $avoid = [];

    /** @var array<int, bool> endpoints (by index) that failed to answer during this client's life */
    private $failed = [];

    /**
     * @param list<string>|string|null $endpoints "host:port" or URLs (a
     *   comma-separated string is split); null reads PADDOCK_HTTP_ENDPOINTS,
     *   else 127.0.0.1:2282
     * @param array{timeout_ms?: int, margin_ms?: int, connect_timeout_ms?: int, attempt_timeout_ms?: int, follow_leader?: bool, leader_file?: string, persistent?: bool} $options
     *   timeout_ms: an ordinary call's time, retries included (10000);
     *   margin_ms: added to a long poll's wait (2000: the server may take its wait + 1 s); connect_timeout_ms:
     *   one attempt's connect timeout (1000); attempt_timeout_ms: how long
     *   an ordinary call waits for one node's answer before it tries the
     *   next (5000: a node that hangs is left for another);
     *   follow_leader: start the next call at the leader when an answer
     *   names it and it is one of the endpoints (false); leader_file: with
     *   follow_leader, a file that keeps the leader's address for the
     *   next PHP request's client ('' or absent: none); persistent: call
     *   http:// endpoints over kept connections instead of curl (false)
     */
    public function __construct($endpoints = null, array $options = [])
    {
        if ($endpoints === null) {
            $env = getenv(self::ENDPOINTS_ENV);
            $endpoints = ($env === false || trim($env) === '') ? self::DEFAULT_ENDPOINT : $env;
        }
        if (is_string($endpoints)) {
            $endpoints = explode(',', $endpoints);
        }
        $this->endpoints = [];
        foreach ($endpoints as $ep) {
            $ep = rtrim(trim((string) $ep), '/');
            if ($ep === '') {
                continue;
            }
            if (preg_match('#^(https?)://#i', $ep, $m)) {
                $ep = strtolower($m[1]) . substr($ep, strlen($m[1]));
            } else {
                $ep = 'http://' . $ep;
            }
            $this->endpoints[] = $ep;
        }
        if ($this->endpoints === []) {
            throw new \InvalidArgumentException('Paddock\Client: no endpoints');
        }
        $persistent = $options['persistent'] ?? false;
        if (!is_bool($persistent)) {
            throw new \InvalidArgumentException('Paddock\Client: option persistent must be a bool');
        }
        $this->persistent = $persistent;
        if (!extension_loaded('curl') && (!$persistent || preg_grep('#^https://#i', $this->endpoints) !== [])) {
            throw new \LogicException('Paddock\Client needs PHP\'s curl extension (Debian: apt-get install php-curl), or option persistent with http:// endpoints only');
        }
        $this->timeoutMs = self::positive($options, 'timeout_ms', 10000);
        $this->marginMs = self::positive($options, 'margin_ms', 2000);
        $this->connectTimeoutMs = self::positive($options, 'connect_timeout_ms', 1000);
        $this->attemptTimeoutMs = self::positive($options, 'attempt_timeout_ms', 5000);
        foreach (array_keys($options) as $k) {
            if (!in_array($k, ['timeout_ms', 'margin_ms', 'connect_timeout_ms', 'attempt_timeout_ms', 'follow_leader', 'leader_file', 'persistent'], true)) {
                throw new \InvalidArgumentException("Paddock\\Client: unknown option $k");
            }
        }
        $follow = $options['follow_leader'] ?? false;
        $file = $options['leader_file'] ?? '';
        if (!is_bool($follow) || !is_string($file)) {
            throw new \InvalidArgumentException('Paddock\\Client: option follow_leader must be a bool and leader_file a string');
        }
        if ($follow) {
            $this->byAddr = [];
            foreach ($this->endpoints as $i => $ep) {
                $addr = substr($ep, strpos($ep, '://') + 3); // host:port, as nodes register it
                $this->byAddr[$addr] = $this->byAddr[$addr] ?? $i;
            }
            if ($file !== '') {
                $this->leaderFile = $file;
                $this->readLeaderFile();
            }
        }
    }

    /** @param array<string, mixed> $options */
    private static function positive(array $options, string $name, int $default): int
    {
        if (!isset($options[$name])) {
            return $default;
        }
        $v = $options[$name];
        if (!is_int($v) || $v <= 0) {
            throw new \InvalidArgumentException("Paddock\\Client: option $name must be a positive integer (ms)");
        }
        return $v;
    }

    /**
     * endpoints returns the base URLs the client uses, in order.
     *
     * @return list<string>
     */
    public function endpoints(): array
    {
        return $this->endpoints;
    }

    /** servedBy is the Served-By header (a node id) of the last answer, errors included. */
    public function servedBy(): ?string
    {
        return $this->servedBy;
    }

    /** lastZxid is the highest zxid seen in an answer's header ("0" before any). */
    public function lastZxid(): string
    {
        return $this->lastZxid;
    }

    /** marginMs is what a long poll's curl timeout adds to its wait. */
    public function marginMs(): int
    {
        return $this->marginMs;
    }

    // ---- the tree ------------------------------------------------------

    /**
     * get reads a znode: ['data' => string, 'stat' => array, 'header' => array].
     *
     * @param array{consistency?: string, min_zxid?: string} $read read options
     * @return array<string, mixed>
     */
    public function get(string $path, array $read = []): array
    {
        $r = $this->call('GET', self::treeRoute('/v1/tree', $path), $this->readQuery($read));
        $r['data'] = self::unb64($r['data'] ?? '');
        return $r;
    }

    /**
     * exists reports whether a znode exists.
     *
     * @param array{consistency?: string, min_zxid?: string} $read read options
     */
    public function exists(string $path, array $read = []): bool
    {
        $r = $this->call('GET', self::treeRoute('/v1/exists', $path), $this->readQuery($read));
        return (bool) ($r['exists'] ?? false);
    }

    /**
     * children lists the names of a znode's children (in name order).
     *
     * @param array{consistency?: string, min_zxid?: string} $read read options
     * @return list<string>
     */
    public function children(string $path, array $read = []): array
    {
        $names = [];
        $token = '';
        do {
            $q = $this->readQuery($read) + ['page_size' => 10000];
            if ($token !== '') {
                $q['page_token'] = $token;
            }
            $r = $this->call('GET', self::treeRoute('/v1/children', $path), $q);
            foreach ($r['children'] ?? [] as $c) {
                $names[] = $c['name'];
            }
            $token = (string) ($r['next_page_token'] ?? '');
        } while ($token !== '');
        return $names;
    }

    /**
     * create creates a znode and returns its path (with the sequential
     * suffix, if any).
     *
     * @param array{type?: string, sequential?: bool, session?: Lease|string, ttl_ms?: int, fence?: array{name: string, token: string}} $options
     *   type: 'persistent' (default), 'ephemeral' (needs session), 'ttl'
     *   (needs ttl_ms), 'container', or a NODE_TYPE_* name; fence: a
     *   Election's or Lock's fence(): the create happens only while it holds
     */
    public function create(string $path, string $data = '', array $options = []): string
    {
        $body = ['data' => base64_encode($data)];
        if (isset($options['type'])) {
            $body['type'] = self::nodeType($options['type']);
        }
        if (!empty($options['sequential'])) {
            $body['sequential'] = true;
        }
        if (isset($options['session'])) {
            $body['session_id'] = $options['session'] instanceof Lease ? $options['session']->id() : (string) $options['session'];
        }
        if (isset($options['ttl_ms'])) {
            $body['ttl_ms'] = (string) $options['ttl_ms'];
        }
        if (isset($options['fence'])) {
            $body['fence'] = self::fenceBody($options['fence']);
        }
        $r = $this->call('POST', self::treeRoute('/v1/tree', $path), [], $body);
        return (string) $r['path'];
    }

    /**
     * set replaces a znode's data and returns its new stat.
     *
     * @param array{version?: int, fence?: array{name: string, token: string}} $options
     *   version: compare-and-set against it; fence: set only while it holds
     * @return array<string, mixed>
     */
    public function set(string $path, string $data, array $options = []): array
    {
        $body = ['data' => base64_encode($data)];
        if (isset($options['version'])) {
            $body['version'] = (int) $options['version'];
        }
        if (isset($options['fence'])) {
            $body['fence'] = self::fenceBody($options['fence']);
        }
        $r = $this->call('PUT', self::treeRoute('/v1/tree', $path), [], $body);
        return $r['stat'];
    }

    /**
     * delete removes a znode (its subtree with recursive) and returns how
     * many znodes were removed.
     *
     * @param array{version?: int, recursive?: bool, fence?: array{name: string, token: string}} $options
     */
    public function delete(string $path, array $options = []): int
    {
        $q = [];
        if (isset($options['version'])) {
            $q['version'] = (int) $options['version'];
        }
        if (!empty($options['recursive'])) {
            $q['recursive'] = true;
        }
        if (isset($options['fence'])) {
            $f = self::fenceBody($options['fence']);
            $q['fence.name'] = $f['name'];
            $q['fence.token'] = $f['token'];
        }
        $r = $this->call('DELETE', self::treeRoute('/v1/tree', $path), $q);
        return (int) ($r['deleted'] ?? 0);
    }

    /**
     * poll is the tree's long poll (GET /v1/poll/PATH): the events under
     * $path after zxid $afterZxid, at once if there are some, else after
     * up to $timeoutMs with none. The answer's ['header']['zxid'] is the
     * next poll's $afterZxid; start from the zxid of the read whose state
     * you hold. OutOfRangeException: events that old are gone, read again.
     *
     * @param array{recursive?: bool, kinds?: string, prev_data?: bool, max_events?: int} $options
     * @return array<string, mixed> 'events' (zxid, kind, path, stat) and 'header'
     */
    public function poll(string $path, string $afterZxid, int $timeoutMs, array $options = []): array
    {
        $q = ['after_zxid' => $afterZxid];
        foreach (['recursive', 'kinds', 'prev_data', 'max_events'] as $k) {
            if (isset($options[$k])) {
                $q[$k] = $options[$k];
            }
        }
        $r = $this->call('GET', self::treeRoute('/v1/poll', $path), $q, null, $timeoutMs);
        foreach ($r['events'] ?? [] as $i => $e) {
            if (isset($e['prev_data'])) {
                $r['events'][$i]['prev_data'] = self::unb64($e['prev_data']);
            }
        }
        return $r;
    }

    // ---- sessions ------------------------------------------------------

    /**
     * openSession opens a session: ['session_id' => string, 'timeout_ms' => string].
     * Most code uses Lease::open instead.
     *
     * @param int $timeoutMs wanted timeout (0: the cluster's default)
     * @param int $lockDelayMs lock-delay (0: the agent's --lock-delay, -1: none)
     * @return array<string, mixed>
     */
    public function openSession(int $timeoutMs = 0, int $lockDelayMs = 0): array
    {
        $body = ['timeout_ms' => (string) $timeoutMs];
        if ($lockDelayMs !== 0) {
            $body['lock_delay_ms'] = (string) $lockDelayMs;
        }
        return $this->call('POST', '/v1/sessions', [], $body);
    }

    /**
     * keepAlive renews a session; SessionExpiredException when it is gone.
     *
     * @return array<string, mixed>
     */
    public function keepAlive(string $sessionId): array
    {
        return $this->call('PUT', '/v1/sessions/' . self::id($sessionId) . '/keepalive');
    }

    /** closeSession closes a session and returns how many ephemerals it deleted. */
    public function closeSession(string $sessionId): int
    {
        $r = $this->call('DELETE', '/v1/sessions/' . self::id($sessionId));
        return (int) ($r['deleted'] ?? 0);
    }

    /**
     * getSession describes a session (NotFoundException when unknown).
     *
     * @return array<string, mixed>
     */
    public function getSession(string $sessionId): array
    {
        return $this->call('GET', '/v1/sessions/' . self::id($sessionId))['session'];
    }

    // ---- elections -----------------------------------------------------

    /**
     * campaign enters the session in the election (or finds its
     * candidate) and waits up to $timeoutMs to lead; the node renews the
     * session meanwhile. The answer: 'elected' (bool), 'candidate' (key,
     * value, token, ...), 'position', 'lock_delay_ms'. Most code uses
     * Election::campaign.
     *
     * @return array<string, mixed>
     */
    public function campaign(string $name, string $sessionId, string $value, int $timeoutMs): array
    {
        $r = $this->call('POST', '/v1/elections/' . self::name($name) . '/campaign', [], [
            'value' => base64_encode($value), 'session_id' => $sessionId,
        ], $timeoutMs);
        $r['candidate'] = self::contender($r['candidate'] ?? null);
        return $r;
    }

    /**
     * leader returns the election's leader (key, value, token, session_id,
     * mod_zxid, ctime), or null when no one leads.
     *
     * @return array<string, mixed>|null
     */
    public function leader(string $name): ?array
    {
        $r = $this->call('GET', '/v1/elections/' . self::name($name) . '/leader', $this->readQuery([]));
        return self::contender($r['leader'] ?? null);
    }

    /**
     * pollLeader waits up to $timeoutMs for a leader other than $known (a
     * contender array from leader() or an earlier poll, or null for none)
     * and returns ['changed' => bool, 'leader' => ?array].
     *
     * @param array<string, mixed>|null $known
     * @return array{changed: bool, leader: array<string, mixed>|null}
     */
    public function pollLeader(string $name, ?array $known, int $timeoutMs): array
    {
        $r = $this->call('GET', '/v1/elections/' . self::name($name) . '/observe', [
            'known_token' => (string) ($known['token'] ?? '0'),
            'known_mod_zxid' => (string) ($known['mod_zxid'] ?? '0'),
        ], null, $timeoutMs);
        return ['changed' => (bool) ($r['changed'] ?? false), 'leader' => self::contender($r['leader'] ?? null)];
    }

    /**
     * proclaim sets the leader's value if $token still leads (else
     * FenceLostException) and returns the leader.
     *
     * @return array<string, mixed>
     */
    public function proclaim(string $name, string $token, string $value): array
    {
        $r = $this->call('PUT', '/v1/elections/' . self::name($name) . '/leader', [], [
            'token' => $token, 'value' => base64_encode($value),
        ]);
        return self::contender($r['leader'] ?? null) ?? [];
    }

    /** resign removes the candidate with $token at once (no lock-delay). */
    public function resign(string $name, string $token): void
    {
        $this->call('POST', '/v1/elections/' . self::name($name) . '/resign', [], ['token' => $token]);
    }

    // ---- locks ---------------------------------------------------------

    /**
     * acquire enters the session in the lock's line (or finds its place)
     * and waits up to $timeoutMs to hold it; the node renews the session
     * meanwhile. The answer: 'acquired', 'holder' (with its token),
     * 'position', 'limit', 'lock_delay_ms'. Most code uses Lock::acquire.
     *
     * @return array<string, mixed>
     */
    public function acquire(string $name, string $sessionId, int $limit, int $timeoutMs, string $value = ''): array
    {
        $r = $this->call('POST', '/v1/locks/' . self::name($name) . '/acquire', [], [
            'session_id' => $sessionId, 'limit' => $limit, 'value' => base64_encode($value),
        ], $timeoutMs);
        $r['holder'] = self::contender($r['holder'] ?? null);
        return $r;
    }

    /**
     * tryAcquire takes the lock only if it is free at once; otherwise it
     * changes nothing. The answer is acquire's, without lock_delay_ms.
     *
     * @return array<string, mixed>
     */
    public function tryAcquire(string $name, string $sessionId, int $limit, string $value = ''): array
    {
        $r = $this->call('POST', '/v1/locks/' . self::name($name) . '/try_acquire', [], [
            'session_id' => $sessionId, 'limit' => $limit, 'value' => base64_encode($value),
        ]);
        $r['holder'] = self::contender($r['holder'] ?? null);
        return $r;
    }

    /** release removes the holder or waiter with $token at once (no lock-delay). */
    public function release(string $name, string $token): void
    {
        $this->call('POST', '/v1/locks/' . self::name($name) . '/release', [], ['token' => $token]);
    }

    /**
     * getLock lists a lock's 'holders' and 'waiters' (contenders, oldest
     * first), its 'limit' and 'lock_delay_ms'.
     *
     * @return array<string, mixed>
     */
    public function getLock(string $name): array
    {
        $r = $this->call('GET', '/v1/locks/' . self::name($name), $this->readQuery([]));
        foreach (['holders', 'waiters'] as $k) {
            $r[$k] = array_map([self::class, 'contender'], $r[$k] ?? []);
        }
        return $r;
    }

    // ---- web sessions --------------------------------------------------

    /**
     * readWebSession reads a PHP web session: 'found', 'data' (decoded),
     * 'version' and 'token' (decimal strings), 'max_lifetime_ms'. With
     * $lock it first takes the session's lock (a lease of $lockTtlMs, 0:
     * 30 s), waiting up to $waitMs (0: the lease) for its holder to
     * release it; a wait that runs out throws AbortedException and takes
     * nothing. Most code uses SessionHandler, which does this for PHP.
     *
     * @return array<string, mixed>
     */
    public function readWebSession(string $id, bool $lock = true, int $lockTtlMs = 0, int $waitMs = 0): array
    {
        $body = ['lock' => $lock, 'lock_ttl_ms' => (string) $lockTtlMs];
        $wait = null;
        if ($lock) {
            // The node waits up to wait_ms: the call is a long poll, and
            // an attempt on another node asks only for what is left.
            $wait = $waitMs > 0 ? $waitMs : ($lockTtlMs > 0 ? $lockTtlMs : 30000);
        }
        $r = $this->send('POST', '/v1/web-sessions/' . self::webSessionId($id) . '/read', [], $body, $wait, null, 'wait_ms', $this->timeoutMs);
        $r['found'] = (bool) ($r['found'] ?? false);
        $d = base64_decode((string) ($r['data'] ?? ''), true);
        if ($d === false) {
            // Reading it as empty would let the next write replace the
            // session's real data.
            throw new PaddockException('bad answer: the session data is not base64', 0, 200, [], $this->servedBy);
        }
        $r['data'] = $d;
        $r['version'] = (string) ($r['version'] ?? '0');
        $r['token'] = (string) ($r['token'] ?? '0');
        $r['max_lifetime_ms'] = (int) ($r['max_lifetime_ms'] ?? 0);
        return $r;
    }

    /**
     * writeWebSession stores a web session's data if it is still at
     * $version ("0": it must not exist) and no other token holds its lock
     * (else FailedPreconditionException, and nothing changes); it
     * releases the lock held with $token unless $keepLock. It returns the
     * new version. $maxLifetimeMs: the idle timeout (0 keeps the
     * session's). $delayed: the delayed write (answered once the leader
     * holds it in memory, committed shortly after; a leader crash before
     * the commit loses it: docs/php.md) instead of write-through.
     */
    public function writeWebSession(string $id, string $data, string $version, string $token = '0', int $maxLifetimeMs = 0, bool $keepLock = false, bool $delayed = false): string
    {
        $body = ['data' => base64_encode($data), 'version' => $version, 'token' => $token,
            'max_lifetime_ms' => (string) $maxLifetimeMs];
        if ($keepLock) {
            $body['keep_lock'] = true;
        }
        if ($delayed) {
            $body['mode'] = 'WEB_SESSION_WRITE_MODE_DELAYED';
        }
        $r = $this->call('PUT', '/v1/web-sessions/' . self::webSessionId($id), [], $body);
        return (string) ($r['version'] ?? '0');
    }

    /** releaseWebSession gives up the lock held with $token; false when $token no longer held it. */
    public function releaseWebSession(string $id, string $token): bool
    {
        $r = $this->call('POST', '/v1/web-sessions/' . self::webSessionId($id) . '/release', [], ['token' => $token]);
        return (bool) ($r['released'] ?? false);
    }

    /**
     * touchWebSession counts an access of a web session (its idle timeout
     * starts again) and releases the lock held with $token, if any; false
     * when the session does not exist.
     */
    public function touchWebSession(string $id, string $token = '0', int $maxLifetimeMs = 0): bool
    {
        $r = $this->call('POST', '/v1/web-sessions/' . self::webSessionId($id) . '/touch', [], [
            'token' => $token, 'max_lifetime_ms' => (string) $maxLifetimeMs,
        ]);
        return (bool) ($r['found'] ?? false);
    }

    /** destroyWebSession deletes a web session (releasing the lock held with $token); false when it did not exist. */
    public function destroyWebSession(string $id, string $token = '0'): bool
    {
        $r = $this->call('DELETE', '/v1/web-sessions/' . self::webSessionId($id), ['token' => $token]);
        return (bool) ($r['destroyed'] ?? false);
    }

    /** validateWebSession says whether a web session with this id exists. */
    public function validateWebSession(string $id): bool
    {
        $r = $this->call('GET', '/v1/web-sessions/' . self::webSessionId($id));
        return (bool) ($r['valid'] ?? false);
    }

    /**
     * createWebSession issues a new web session id (128 random bits
     * written with $bitsPerCharacter: 4, 5 or 6, PHP's
     * session.sid_bits_per_character; 0 means 4), stored as an empty
     * session.
     */
    public function createWebSession(int $bitsPerCharacter = 0, int $maxLifetimeMs = 0): string
    {
        $r = $this->call('POST', '/v1/web-sessions', [], [
            'sid_bits_per_character' => $bitsPerCharacter, 'max_lifetime_ms' => (string) $maxLifetimeMs,
        ]);
        return (string) ($r['id'] ?? '');
    }

    // ---- the transport -------------------------------------------------

    /**
     * call sends one API call and returns the decoded JSON answer; any
     * route of docs/http-api.md can be called this way. Writes (every
     * method but GET) carry an Idempotency-Key. With $waitMs the call is
     * a long poll: it is given $waitMs + margin_ms, and each attempt asks
     * the node (timeout_ms, in the body of a POST or the query of a GET)
     * to wait at most what is left of $waitMs. $requestId replaces the
     * write's fresh Idempotency-Key: pass the same one only to repeat the
     * same request after this call gave up. $waitField names the wait's
     * field for routes that call it otherwise (a web session read's
     * wait_ms).
     *
     * @param array<string, scalar> $query
     * @param array<string, mixed>|null $body
     * @return array<string, mixed>
     */
    public function call(string $method, string $route, array $query = [], ?array $body = null, ?int $waitMs = null, ?string $requestId = null, string $waitField = 'timeout_ms'): array
    {
        return $this->send($method, $route, $query, $body, $waitMs, $requestId, $waitField, null);
    }

    /**
     * send is call, and with $unansweredMs a long poll stops failing over
     * after that long instead of trying until its wait is up: a web
     * session read waits long for a lock, but not for a cluster that is
     * down.
     *
     * @param array<string, scalar> $query
     * @param array<string, mixed>|null $body
     * @return array<string, mixed>
     */
    private function send(string $method, string $route, array $query, ?array $body, ?int $waitMs, ?string $requestId, string $waitField, ?int $unansweredMs): array
    {
        $method = strtoupper($method);
        $key = $method === 'GET' ? null : ($requestId ?? self::newRequestId());
        $budgetMs = $waitMs === null ? $this->timeoutMs : max(0, $waitMs) + $this->marginMs;
        $deadline = hrtime(true) + $budgetMs * 1000000;
        if ($unansweredMs === null || $unansweredMs >= $budgetMs) {
            $unansweredMs = $budgetMs;
        }
        $failingSince = null; // when the first attempt failed
        $pauseMs = 100;
        $failures = [];
        $timedOut = false;
        for ($attempt = 0;; $attempt++) {
            $left = intdiv($deadline - hrtime(true), 1000000);
            if ($attempt > 0 && $attempt % count($this->endpoints) === 0) {
                // A whole round failed: the cluster may be electing a leader.
                $sleep = min($pauseMs, $left);
                if ($sleep > 0) {
                    usleep($sleep * 1000);
                }
                $pauseMs = min($pauseMs * 2, 1000);
                $left = intdiv($deadline - hrtime(true), 1000000);
            }
            if ($left <= 0 || ($waitMs !== null && $attempt > 0 && $left <= $this->marginMs)) {
                break;
            }
            if ($failingSince !== null && hrtime(true) - $failingSince >= $unansweredMs * 1000000) {
                break;
            }
            $q = $query;
            $b = $body;
            if ($waitMs !== null) {
                // At least 1 ms: 0 would mean "as long as the call lasts".
                $wait = (string) max(1, min($waitMs, $left - $this->marginMs));
                if ($method === 'GET') {
                    $q[$waitField] = $wait;
                } else {
                    $b = ($b ?? []) + [$waitField => $wait];
                }
            }
            $endpoint = $this->endpoints[$this->current];
            // A long poll's attempt may take all that is left: its answer
            // comes at the end of its wait.
            $attemptMs = $waitMs === null ? min($left, $this->attemptTimeoutMs) : $left;
            $attemptStart = hrtime(true);
            $res = $this->persistent && strncmp($endpoint, 'http://', 7) === 0
                ? $this->attemptKept($method, substr($endpoint, 7), $route, $q, $b, $key, $attemptMs)
                : $this->attempt($method, $endpoint . $route, $q, $b, $key, $attemptMs);
            if ($res['error'] !== null) {
                if ($this->byAddr !== null) {
                    $this->unreachable($this->current);
                }
                $failingSince = $failingSince ?? hrtime(true);
                $failures[] = $endpoint . ' (' . $res['error'] . ')';
                $timedOut = $res['timeout'];
                $this->current = ($this->current + 1) % count($this->endpoints);
                continue;
            }
            $this->servedBy = $res['served_by'];
            $status = $res['status'];
            if ($this->byAddr !== null && $status !== 503) {
                // A 503 (a node catching up, stopping, cut off from the
                // leader) goes on to the next endpoint instead.
                $this->follow($res['leader']);
            }
            $decoded = json_decode($res['body'], true, 512, JSON_BIGINT_AS_STRING);
            if ($status >= 200 && $status < 300) {
                if (!is_array($decoded)) {
                    throw new PaddockException("bad answer from $endpoint: not JSON: " . substr($res['body'], 0, 200), 0, $status, [], $this->servedBy);
                }
                $this->seeZxid($decoded['header']['zxid'] ?? null);
                return $decoded;
            }
            $err = self::error($status, $decoded, $res['body'], $this->servedBy);
            if ($err instanceof UnavailableException) {
                // A node that answered after a long wait (a lock's queue
                // on a leader that then lost leadership) was working: the
                // time without an answer counts from now.
                $failingSince = ($failingSince === null || hrtime(true) - $attemptStart > 1000000000) ? hrtime(true) : $failingSince;
                $failures[] = $endpoint . ' (' . $err->getMessage() . ')';
                $timedOut = false;
                $this->current = ($this->current + 1) % count($this->endpoints);
                continue;
            }
            throw $err;
        }
        // A web session's id is a secret (whoever has it is logged in as
        // its user): it is not written into messages that reach logs.
        $what = $method . ' ' . preg_replace('#^/v1/web-sessions/[^/?]+#', '/v1/web-sessions/(id)', $route);
        $tried = implode(', ', array_slice($failures, -count($this->endpoints)));
        if ($timedOut) {
            throw new TimeoutException("$what: no answer within {$budgetMs} ms: $tried", 4);
        }
        if ($failures === []) {
            throw new TimeoutException("$what: no time left to send it ({$budgetMs} ms)", 4);
        }
        throw new UnavailableException("$what: no node available within " . min($budgetMs, $unansweredMs) . " ms: $tried", 14);
    }

    /**
     * attempt sends one HTTP request. It returns the status, body and
     * Served-By, or error (a transport error: no connection, no answer)
     * and whether that error was curl's timeout.
     *
     * @param array<string, scalar> $query
     * @param array<string, mixed>|null $body
     * @return array{status: int, body: string, served_by: ?string, leader: ?string, error: ?string, timeout: bool}
     */
    private function attempt(string $method, string $url, array $query, ?array $body, ?string $key, int $timeoutMs): array
    {
        if ($this->curl === null) {
            $this->curl = curl_init();
        } else {
            curl_reset($this->curl); // keeps the open connections
        }
        $h = $this->curl;
        if ($query !== []) {
            $url .= '?' . self::queryString($query);
        }
        $headers = ['Accept: application/json', 'Expect:'];
        if ($key !== null) {
            $headers[] = 'Idempotency-Key: ' . $key;
        }
        $servedBy = null;
        $leader = null;
        curl_setopt_array($h, [
            CURLOPT_URL => $url,
            CURLOPT_CUSTOMREQUEST => $method,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_NOSIGNAL => true,
            CURLOPT_TIMEOUT_MS => $timeoutMs,
            CURLOPT_CONNECTTIMEOUT_MS => min($this->connectTimeoutMs, $timeoutMs),
            CURLOPT_PROTOCOLS => CURLPROTO_HTTP | CURLPROTO_HTTPS,
            CURLOPT_HEADERFUNCTION => static function ($ch, string $line) use (&$servedBy, &$leader): int {
                if (stripos($line, 'served-by:') === 0) {
                    $servedBy = trim(substr($line, strlen('served-by:')));
                } elseif (stripos($line, 'paddock-leader:') === 0) {
                    $leader = trim(substr($line, strlen('paddock-leader:')));
                }
                return strlen($line);
            },
        ]);
        if ($body !== null) {
            $headers[] = 'Content-Type: application/json';
            curl_setopt($h, CURLOPT_POSTFIELDS, self::json($body ?? []));
        }
        curl_setopt($h, CURLOPT_HTTPHEADER, $headers);
        $out = curl_exec($h);
        if ($out === false) {
            $errno = curl_errno($h);
            return ['status' => 0, 'body' => '', 'served_by' => null, 'leader' => null,
                'error' => curl_error($h) ?: "curl error $errno", 'timeout' => $errno === CURLE_OPERATION_TIMEDOUT];
        }
        return ['status' => (int) curl_getinfo($h, CURLINFO_RESPONSE_CODE), 'body' => (string) $out,
            'served_by' => $servedBy, 'leader' => $leader, 'error' => null, 'timeout' => false];
    }

    /**
     * attemptKept is attempt over a kept connection (option persistent):
     * HTTP/1.1 on a persistent PHP socket, which PHP keeps open from one
     * request to the next in the same process (a PHP-FPM or php -S
     * worker), so that a page view neither connects nor sets up curl.
     * $hostPath is an http:// endpoint without its scheme ("host:port",
     * perhaps followed by a path). A connection the node had closed while
     * it was kept (nothing came back, and it had answered before) is
     * replaced once, on the same node: every call that is not a read
     * carries its request id, so sending it again is safe. Any other
     * failure closes the connection, so that no later call reads what is
     * left of this one's answer.
     *
     * @param array<string, scalar> $query
     * @param array<string, mixed>|null $body
     * @return array{status: int, body: string, served_by: ?string, leader: ?string, error: ?string, timeout: bool}
     */
    private function attemptKept(string $method, string $hostPath, string $route, array $query, ?array $body, ?string $key, int $timeoutMs): array
    {
        $slash = strpos($hostPath, '/');
        $host = $slash === false ? $hostPath : substr($hostPath, 0, $slash);
        $target = ($slash === false ? '' : substr($hostPath, $slash)) . $route;
        if ($query !== []) {
            $target .= '?' . self::queryString($query);
        }
        if (!preg_match('/^[A-Z]+$/D', $method) || preg_match('/[\x00-\x20\x7f]/', $host . $target . ($key ?? ''))) {
            // It would break the request, or smuggle another in.
            throw new \InvalidArgumentException('Paddock\\Client: a method, endpoint, route or request id with spaces or control characters');
        }
        $req = "$method $target HTTP/1.1\r\nHost: $host\r\nAccept: application/json\r\n";
        if ($key !== null) {
            $req .= "Idempotency-Key: $key\r\n";
        }
        if ($body !== null) {
            $payload = self::json($body);
            $req .= "Content-Type: application/json\r\nContent-Length: " . strlen($payload) . "\r\n\r\n" . $payload;
        } else {
            $req .= "\r\n";
        }
        $deadline = hrtime(true) + $timeoutMs * 1000000;
        // Warnings (a refused connection, a reset) are answers here, and
        // an application's error handler must not see them.
        set_error_handler(static function (): bool {
            return true;
        });
        try {
            return $this->keptExchange($host, $req, $method === 'HEAD', $deadline);
        } finally {
            restore_error_handler();
        }
    }

    /**
     * keptExchange sends $req to $host ("host:port" or "host") on its
     * kept connection, opening one when there is none, and replaces a
     * connection the node had closed once.
     *
     * @return array{status: int, body: string, served_by: ?string, leader: ?string, error: ?string, timeout: bool}
     */
    private function keptExchange(string $host, string $req, bool $noBody, int $deadline): array
    {
        $addr = strpos($host, ':') === false || substr($host, -1) === ']' ? "$host:80" : $host;
        for ($try = 0;; $try++) {
            $fp = $this->sockets[$addr] ?? null;
            // Once this client has it, a connection is idle between its
            // calls (any failure closes it) unless a call of this request
            // did not finish on it: open() checks a connection kept from
            // an earlier request.
            if (is_resource($fp) && isset(self::$busy[(int) $fp])) {
                fclose($fp);
            }
            if (!is_resource($fp)) { // none yet, or closed (perhaps by another client of this process)
                $fp = $this->open($addr, $deadline);
                if (is_array($fp)) {
                    return $fp;
                }
                $this->sockets[$addr] = $fp;
            }
            // A kept connection has been written to before (its position
            // counts the bytes written and read).
            $used = ftell($fp) > 0;
            self::$busy[(int) $fp] = $fp;
            if (!self::$closesBusy) {
                register_shutdown_function([self::class, 'closeBusy']);
                self::$closesBusy = true;
            }
            $sent = hrtime(true);
            try {
                $res = self::exchange($fp, $req, $noBody, $deadline);
            } catch (\Throwable $e) {
                fclose($fp);
                unset($this->sockets[$addr], self::$busy[(int) $fp]);
                throw $e;
            }
            unset(self::$busy[(int) $fp]);
            if ($res['error'] === null) {
                if ($res['close']) {
                    fclose($fp);
                    unset($this->sockets[$addr]);
                }
                unset($res['close'], $res['got']);
                return $res;
            }
            fclose($fp);
            unset($this->sockets[$addr]);
            // A node that closed the connection says so at once; one
            // that failed it only after connect_timeout_ms is a host that
            // does not answer (TCP_USER_TIMEOUT): not to be tried again.
            if ($try > 0 || !$used || $res['got'] > 0 || $res['timeout'] || hrtime(true) >= $deadline
                || hrtime(true) - $sent >= $this->connectTimeoutMs * 1000000) {
                unset($res['close'], $res['got']);
                return $res;
            }
        }
    }

    /**
     * open returns a connection to $addr: PHP's kept one, when it has one
     * that is idle (PHP replaces it when the node closed it), else a new
     * one; or the failed attempt's answer.
     *
     * @return resource|array{status: int, body: string, served_by: ?string, leader: ?string, error: ?string, timeout: bool}
     */
    private function open(string $addr, int $deadline)
    {
        for ($i = 0; $i < 2; $i++) {
            $left = ($deadline - hrtime(true)) / 1e9;
            $fp = stream_socket_client("tcp://$addr", $errno, $errstr, min($this->connectTimeoutMs / 1000, max($left, 0.001)),
                STREAM_CLIENT_CONNECT | STREAM_CLIENT_PERSISTENT);
            if ($fp === false) {
                $timeout = $errno === 110 || $errno === 0 && stripos($errstr, 'timed out') !== false;
                return ['status' => 0, 'body' => '', 'served_by' => null, 'leader' => null,
                    'error' => 'connecting: ' . ($errstr !== '' ? $errstr : "error $errno"), 'timeout' => $timeout];
            }
            if (ftell($fp) === 0 || self::idle($fp)) {
                break;
            }
            fclose($fp); // something is waiting on it: not ours to read
        }
        if (PHP_OS_FAMILY === 'Linux' && function_exists('socket_import_stream')) {
            // A node whose host died, or that a partition cut off, does
            // not close its connections: without a limit, a call sent on
            // a kept one would wait its whole time for an answer. With
            // TCP_USER_TIMEOUT (18), data the node's host does not
            // acknowledge within connect_timeout_ms fails the connection,
            // as a new connection fails to connect.
            $sock = socket_import_stream($fp);
            if ($sock !== false && $sock !== null) {
                socket_set_option($sock, SOL_TCP, 18, $this->connectTimeoutMs);
            }
        }
        return $fp;
    }

    /**
     * idle says whether nothing waits to be read on a kept connection: an
     * answer left by a request that died in the middle of a call (not
     * ours to read), or the node's closing.
     *
     * @param resource $fp
     */
    private static function idle($fp): bool
    {
        if ((stream_get_meta_data($fp)['unread_bytes'] ?? 0) > 0) {
            return false;
        }
        $r = [$fp];
        $w = null;
        $e = null;
        return stream_select($r, $w, $e, 0) === 0;
    }

    /**
     * closeBusy closes the kept connections of calls this PHP request did
     * not finish (a fatal error, max_execution_time): their answers must
     * not reach the next request. It runs at shutdown.
     *
     * @internal
     */
    public static function closeBusy(): void
    {
        foreach (self::$busy as $fp) {
            if (is_resource($fp)) {
                fclose($fp);
            }
        }
        self::$busy = [];
    }

    /**
     * exchange writes one request on $fp and reads its answer, by
     * $deadline (hrtime ns). 'got' counts the answer's bytes read, 'close'
     * says the node closes the connection after it.
     *
     * @param resource $fp
     * @return array{status: int, body: string, served_by: ?string, leader: ?string, error: ?string, timeout: bool, got: int, close: bool}
     */
    private static function exchange($fp, string $req, bool $noBody, int $deadline): array
    {
        $fail = static function (string $error, bool $timeout, int $got): array {
            return ['status' => 0, 'body' => '', 'served_by' => null, 'leader' => null, 'error' => $error,
                'timeout' => $timeout, 'got' => $got, 'close' => true];
        };
        for ($off = 0, $n = strlen($req); $off < $n;) {
            $left = $deadline - hrtime(true);
            if ($left <= 0) {
                return $fail('sending: timed out', true, 0);
            }
            stream_set_timeout($fp, intdiv($left, 1000000000), intdiv($left % 1000000000, 1000));
            // In slices, each with what is left of the time: one fwrite
            // waits its timeout again after each part it wrote.
            $w = fwrite($fp, $off === 0 && $n <= 65536 ? $req : substr($req, $off, 65536));
            if ($w === false || $w === 0) {
                $timeout = (bool) (stream_get_meta_data($fp)['timed_out'] ?? false);
                return $fail($timeout ? 'sending: timed out' : 'sending: connection closed', $timeout, 0);
            }
            $off += $w;
        }
        // The answer: a status line and headers, then a body of
        // Content-Length bytes or in chunks.
        $buf = '';
        $got = 0;
        $end = false;
        $status = 0;
        $servedBy = null;
        $leader = null;
        $close = false;
        $length = null;
        $chunked = false;
        $head = null;
        $body = '';
        $pos = 0; // in $buf, where the body's unread part starts
        for (;;) {
            if ($head === null) {
                $p = strpos($buf, "\r\n\r\n");
                if ($p !== false) {
                    $head = substr($buf, 0, $p);
                    $pos = $p + 4;
                    $lines = explode("\r\n", $head);
                    if (!preg_match('#^HTTP/1\.[01] ([0-9]{3})#', $lines[0], $m)) {
                        return $fail('bad answer: ' . substr($lines[0], 0, 80), false, $got);
                    }
                    $status = (int) $m[1];
                    $close = strncmp($lines[0], 'HTTP/1.0', 8) === 0;
                    for ($i = 1, $c = count($lines); $i < $c; $i++) {
                        $colon = strpos($lines[$i], ':');
                        if ($colon === false) {
                            continue;
                        }
                        $v = trim(substr($lines[$i], $colon + 1));
                        switch (strtolower(substr($lines[$i], 0, $colon))) {
                            case 'content-length':
                                $length = ctype_digit($v) ? (int) $v : -1;
                                break;
                            case 'transfer-encoding':
                                $chunked = stripos($v, 'chunked') !== false;
                                break;
                            case 'connection':
                                $close = $close || stripos($v, 'close') !== false;
                                break;
                            case 'served-by':
                                $servedBy = $v;
                                break;
                            case 'paddock-leader':
                                $leader = $v;
                                break;
                        }
                    }
                    if ($length === -1) {
                        return $fail('bad answer: Content-Length', false, $got);
                    }
                    if ($chunked && $length !== null) {
                        $close = true; // both: a confused sender, not to be trusted with the next call
                        $length = null;
                    }
                    if ($noBody || $status === 204 || $status === 304 || ($status >= 100 && $status < 200)) {
                        if ($status < 200) { // an interim answer: the real one follows
                            $buf = substr($buf, $pos);
                            $head = null;
                            $length = null;
                            $chunked = false;
                            $servedBy = null;
                            $leader = null;
                            continue;
                        }
                        $length = 0;
                        $chunked = false;
                    }
                    if (!$chunked && $length === null) {
                        $close = true; // the body ends with the connection
                    }
                }
            }
            if ($head !== null) {
                if ($chunked) {
                    // size CRLF data CRLF ... 0 CRLF [trailers] CRLF
                    for (;;) {
                        $eol = strpos($buf, "\r\n", $pos);
                        if ($eol === false) {
                            break;
                        }
                        $size = substr($buf, $pos, $eol - $pos);
                        $semi = strpos($size, ';');
                        $size = trim($semi === false ? $size : substr($size, 0, $semi));
                        if ($size === '' || !ctype_xdigit($size) || strlen($size) > 8) {
                            return $fail('bad answer: chunk size', false, $got);
                        }
                        $len = hexdec($size);
                        if ($len === 0) {
                            $t = strpos($buf, "\r\n\r\n", $eol);
                            if ($t === false) {
                                break;
                            }
                            return ['status' => $status, 'body' => $body, 'served_by' => $servedBy, 'leader' => $leader,
                                'error' => null, 'timeout' => false, 'got' => $got, 'close' => $close || $t + 4 !== strlen($buf)];
                        }
                        if (strlen($buf) < $eol + 2 + $len + 2) {
                            break;
                        }
                        if (substr($buf, $eol + 2 + $len, 2) !== "\r\n") {
                            return $fail('bad answer: chunk end', false, $got);
                        }
                        $body .= substr($buf, $eol + 2, $len);
                        $pos = $eol + 2 + $len + 2;
                    }
                    if ($pos > 65536) {
                        $buf = substr($buf, $pos);
                        $pos = 0;
                    }
                } elseif ($length !== null && strlen($buf) - $pos >= $length) {
                    return ['status' => $status, 'body' => substr($buf, $pos, $length), 'served_by' => $servedBy, 'leader' => $leader,
                        'error' => null, 'timeout' => false, 'got' => $got, 'close' => $close || strlen($buf) - $pos > $length];
                } elseif ($end && $length === null) {
                    return ['status' => $status, 'body' => substr($buf, $pos), 'served_by' => $servedBy, 'leader' => $leader,
                        'error' => null, 'timeout' => false, 'got' => $got, 'close' => true];
                }
            }
            if ($end) {
                return $fail($got === 0 ? 'connection closed before an answer' : 'connection closed in the middle of the answer', false, $got);
            }
            $left = $deadline - hrtime(true);
            if ($left <= 0) {
                return $fail('no answer in time: timed out', true, $got);
            }
            stream_set_timeout($fp, intdiv($left, 1000000000), intdiv($left % 1000000000, 1000));
            $chunk = fread($fp, 65536);
            if ($chunk === false || $chunk === '') {
                if ((bool) (stream_get_meta_data($fp)['timed_out'] ?? false)) {
                    return $fail('no answer in time: timed out', true, $got);
                }
                if (feof($fp)) {
                    $end = true;
                    continue;
                }
                return $fail('reading: connection error', false, $got);
            }
            $got += strlen($chunk);
            $buf .= $chunk;
        }
    }

    /**
     * follow makes the endpoint at the leader's address (an answer's
     * Paddock-Leader, null when it had none) the next call's first, and
     * keeps it in the leader file, unless that endpoint failed during
     * this client's life or the file says to avoid it. A leader whose
     * address is not one of ours empties the file: the next clients
     * start at the head of the list again.
     */
    private function follow(?string $leader): void
    {
        if ($leader === null) {
            return;
        }
        $i = $this->byAddr[$leader] ?? null;
        if ($i === null) {
            if ($this->fileText !== '' && strncmp($this->fileText, 'avoid ', 6) !== 0) {
                $this->writeLeaderFile('');
            }
            return;
        }
        if (isset($this->failed[$i]) || ($this->avoid[$leader] ?? 0) > time()) {
            return;
        }
        $this->current = $i;
        if ($this->fileText !== $leader) {
            $this->writeLeaderFile($leader);
        }
    }

    /**
     * unreachable notes that endpoint $i did not answer: this client no
     * longer follows to it, and when the leader file sends clients there,
     * it tells them to avoid it for AVOID_S seconds.
     */
    private function unreachable(int $i): void
    {
        $this->failed[$i] = true;
        $ep = $this->endpoints[$i];
        $addr = substr($ep, strpos($ep, '://') + 3);
        if ($this->fileText === $addr) {
            $until = time() + self::AVOID_S;
            $this->avoid[$addr] = $until;
            $this->writeLeaderFile("avoid $addr $until");
        }
    }

    /**
     * readLeaderFile starts this client at the leader the file names, or
     * notes the address it says to avoid. The file is trusted only when
     * this process's user owns it: in a shared directory another user's
     * file is ignored.
     */
    private function readLeaderFile(): void
    {
        $file = $this->leaderFile;
        $text = self::quietly(static function () use ($file) {
            if (!is_file($file) || (function_exists('posix_geteuid') && fileowner($file) !== posix_geteuid())) {
                return false;
            }
            return file_get_contents($file, false, null, 0, 256);
        });
        if (!is_string($text)) {
            return;
        }
        $this->fileText = $text;
        if (isset($this->byAddr[$text])) {
            $this->current = $this->byAddr[$text];
        } elseif (preg_match('/^avoid (\S+) ([0-9]{1,12})$/D', $text, $m)) {
            $this->avoid[$m[1]] = (int) $m[2];
        }
    }

    /**
     * writeLeaderFile replaces the leader file's content, whole (a
     * temporary file renamed over it). The file is a hint: a failure to
     * write it is ignored.
     */
    private function writeLeaderFile(string $text): void
    {
        $this->fileText = $text;
        $file = $this->leaderFile;
        if ($file === null) {
            return;
        }
        self::quietly(static function () use ($file, $text) {
            $tmp = $file . '.' . bin2hex(random_bytes(6));
            if (file_put_contents($tmp, $text) !== strlen($text) || !rename($tmp, $file)) {
                if (is_file($tmp)) {
                    unlink($tmp);
                }
            }
        });
    }

    /**
     * quietly calls $f with PHP's warnings ignored: the leader file is a
     * hint, and an application's error handler (which may turn every
     * warning into an exception, @ or not) must not see it fail.
     *
     * @return mixed what $f returns
     */
    private static function quietly(callable $f)
    {
        set_error_handler(static function (): bool {
            return true;
        });
        try {
            return $f();
        } finally {
            restore_error_handler();
        }
    }

    /**
     * error makes the typed exception of an error answer: by its gRPC code
     * (else its HTTP status); a FAILED_PRECONDITION whose fence no longer
     * holds, or whose session is gone, gets its own class.
     *
     * @param mixed $decoded the decoded body
     */
    private static function error(int $status, $decoded, string $raw, ?string $servedBy): PaddockException
    {
        if (is_array($decoded) && isset($decoded['error']) && is_array($decoded['error'])) {
            $decoded = $decoded['error']; // a stream's error line
        }
        if (!is_array($decoded) || !isset($decoded['code'])) {
            $code = [400 => 3, 404 => 5, 409 => 6, 410 => 11, 412 => 9, 503 => 14, 504 => 4][$status] ?? 0;
            $msg = "HTTP $status: " . substr(trim($raw), 0, 200);
            $details = [];
        } else {
            $code = (int) $decoded['code'];
            $msg = (string) ($decoded['message'] ?? "HTTP $status");
            $details = is_array($decoded['details'] ?? null) ? $decoded['details'] : [];
        }
        switch ($code) {
            case 3:
                return new InvalidArgumentException($msg, $code, $status, $details, $servedBy);
            case 4:
                return new TimeoutException($msg, $code, $status, $details, $servedBy);
            case 5:
                return new NotFoundException($msg, $code, $status, $details, $servedBy);
            case 6:
                return new AlreadyExistsException($msg, $code, $status, $details, $servedBy);
            case 9:
                if (stripos($msg, 'fence lost') !== false) {
                    return new FenceLostException($msg, $code, $status, $details, $servedBy);
                }
                if (stripos($msg, 'session expired') !== false) {
                    return new SessionExpiredException($msg, $code, $status, $details, $servedBy);
                }
                return new FailedPreconditionException($msg, $code, $status, $details, $servedBy);
            case 10:
                return new AbortedException($msg, $code, $status, $details, $servedBy);
            case 11:
                return new OutOfRangeException($msg, $code, $status, $details, $servedBy);
            case 14:
                return new UnavailableException($msg, $code, $status, $details, $servedBy);
        }
        return new PaddockException($msg, $code, $status, $details, $servedBy);
    }

    /** newRequestId is a fresh Idempotency-Key: 16 random bytes as 32 hex digits. */
    public static function newRequestId(): string
    {
        return bin2hex(random_bytes(16));
    }

    /** @param mixed $zxid */
    private function seeZxid($zxid): void
    {
        if (is_string($zxid) && ctype_digit($zxid) && self::cmpUint($zxid, $this->lastZxid) > 0) {
            $this->lastZxid = $zxid;
        }
    }

    /** cmpUint compares two decimal unsigned integers given as strings. */
    public static function cmpUint(string $a, string $b): int
    {
        $a = ltrim($a, '0');
        $b = ltrim($b, '0');
        return strlen($a) <=> strlen($b) ?: strcmp($a, $b) <=> 0;
    }

    /**
     * readQuery is a read's query: its options, and min_zxid = lastZxid
     * unless given, so that a read on any node reflects every write this
     * client made or saw.
     *
     * @param array{consistency?: string, min_zxid?: string} $read
     * @return array<string, string>
     */
    private function readQuery(array $read): array
    {
        $q = [];
        if (isset($read['consistency'])) {
            $c = strtoupper((string) $read['consistency']);
            $q['read.consistency'] = strpos($c, 'READ_CONSISTENCY_') === 0 ? $c : 'READ_CONSISTENCY_' . $c;
        }
        $min = (string) ($read['min_zxid'] ?? $this->lastZxid);
        if ($min !== '0') {
            $q['read.min_zxid'] = $min;
        }
        return $q;
    }

    /**
     * treeRoute is a route prefix followed by a znode path, each name
     * URL-encoded. A "." or ".." name is refused: curl would resolve it in
     * the URL, so that the call would reach another znode ("/a/x/../b" is
     * "/a/b") instead of failing as the cluster fails such a path.
     */
    private static function treeRoute(string $prefix, string $path): string
    {
        if ($path === '' || $path[0] !== '/') {
            throw new \InvalidArgumentException("Paddock\\Client: path \"$path\" is not absolute");
        }
        $names = array_filter(explode('/', $path), 'strlen');
        if ($path !== '/' && count($names) !== substr_count($path, '/')) {
            throw new \InvalidArgumentException("Paddock\\Client: bad path \"$path\": empty name");
        }
        if (in_array('.', $names, true) || in_array('..', $names, true)) {
            throw new \InvalidArgumentException("Paddock\\Client: bad path \"$path\": a relative segment (. or ..)");
        }
        return $prefix . ($names === [] ? '' : '/' . implode('/', array_map('rawurlencode', $names)));
    }

    /**
     * name checks an election or lock name (one znode name) for a URL.
     * "." and ".." are not znode names, and curl would remove them from
     * the URL as path segments.
     */
    private static function name(string $name): string
    {
        if ($name === '' || strpos($name, '/') !== false) {
            throw new \InvalidArgumentException("Paddock\\Client: bad name \"$name\": one znode name, no '/'");
        }
        if ($name === '.' || $name === '..') {
            throw new \InvalidArgumentException("Paddock\\Client: bad name \"$name\": one znode name, not . or ..");
        }
        return rawurlencode($name);
    }

    /** id checks a session id (a decimal uint64 string). */
    private static function id(string $id): string
    {
        if (!ctype_digit($id)) {
            throw new \InvalidArgumentException("Paddock\\Client: bad session id \"$id\"");
        }
        return $id;
    }

    /**
     * webSessionId checks a web session id for a URL: PHP's session id
     * grammar, 1 to 256 of a-z, A-Z, 0-9, ',' and '-' (the cluster's
     * too; it also keeps "." and ".." out of the URL).
     */
    private static function webSessionId(string $id): string
    {
        if (!preg_match('/^[a-zA-Z0-9,-]{1,256}$/D', $id)) {
            throw new \InvalidArgumentException('Paddock\Client: bad web session id "' . substr($id, 0, 300) . '": 1 to 256 of a-z, A-Z, 0-9, \',\' and \'-\'');
        }
        return $id;
    }

    /**
     * @param mixed $fence
     * @return array{name: string, token: string}
     */
    private static function fenceBody($fence): array
    {
        if (!is_array($fence) || !isset($fence['name'], $fence['token'])) {
            throw new \InvalidArgumentException('Paddock\Client: a fence is [\'name\' => \'elections/NAME\' or \'locks/NAME\', \'token\' => TOKEN]: pass Election::fence() or Lock::fence()');
        }
        return ['name' => (string) $fence['name'], 'token' => (string) $fence['token']];
    }

    private static function nodeType(string $type): string
    {
        $t = strtoupper($type);
        return strpos($t, 'NODE_TYPE_') === 0 ? $t : 'NODE_TYPE_' . $t;
    }

    /**
     * contender decodes a Contender's value; null stays null.
     *
     * @param mixed $c
     * @return array<string, mixed>|null
     */
    private static function contender($c): ?array
    {
        if (!is_array($c)) {
            return null;
        }
        $c['value'] = self::unb64($c['value'] ?? '');
        return $c;
    }

    private static function unb64(string $s): string
    {
        $d = base64_decode($s, true);
        return $d === false ? '' : $d;
    }

    /** @param array<string, mixed> $body */
    private static function json(array $body): string
    {
        if ($body === []) {
            return '{}';
        }
        return json_encode($body, JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR);
    }

    /** @param array<string, scalar> $query */
    private static function queryString(array $query): string
    {
        foreach ($query as $k => $v) {
            if (is_bool($v)) {
                $query[$k] = $v ? 'true' : 'false';
            }
        }
        return http_build_query($query, '', '&', PHP_QUERY_RFC3986);
    }
}
