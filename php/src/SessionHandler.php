<?php

declare(strict_types=1);

namespace Paddock;

use Paddock\Exception\AbortedException;
use Paddock\Exception\FailedPreconditionException;
use Paddock\Exception\PaddockException;
use Paddock\Exception\TimeoutException;
use Paddock\Exception\UnavailableException;

/**
 * SessionHandler stores PHP's sessions in a Paddock cluster, so that
 * every web server of a farm sees every session, and serialises the
 * requests of one session with a lock, as PHP's files handler does with
 * flock. Switch a site over with one php.ini line,
 * auto_prepend_file=/path/to/php/paddock-session.php, which calls
 * register(); see docs/php.md.
 *
 * A page view: read() takes the session's lock (a lease of lock_ttl_ms,
 * waiting up to wait_ms for the request that holds it, woken by its
 * release) and keeps the lock's token and the version read; write()
 * stores the data with both, applied only if the session is still at
 * that version, and releases the lock; updateTimestamp() (data unchanged,
 * session.lazy_write) and close() (read_and_close, session_abort) release
 * it without writing. A page view that changes nothing writes nothing to
 * the cluster's log.
 *
 * Failures: when the lock stays held past wait_ms, or no node answers,
 * read() returns false with an E_USER_WARNING, so session_start() fails
 * (returns false) and nothing is written. A write refused because the
 * session changed meanwhile (the lease ran out and another request wrote)
 * returns false with a warning: the newer data stays. The handler never
 * throws to PHP's session module.
 *
 * Session ids are secrets: the warnings never contain one.
 */
final class SessionHandler implements \SessionHandlerInterface, \SessionIdInterface, \SessionUpdateTimestampHandlerInterface
{
    /** DEFAULT_LOCK_TTL_MS is the lock's lease: PHP's default max_execution_time. */
    public const DEFAULT_LOCK_TTL_MS = 30000;

    /** MAX_MS is the longest lease or wait the cluster accepts (10 minutes). */
    public const MAX_MS = 600000;

    /** MODE_WRITE_THROUGH acknowledges a write after the cluster committed it. */
    public const MODE_WRITE_THROUGH = 'write-through';

    /**
     * MODE_DELAYED is Zend's delayed write: a write is acknowledged once
     * the cluster's leader and every other node hold it in memory, and
     * committed in the background (about 100 ms later); two nodes failing
     * in between lose it, a crash of the leader alone does not
     * (docs/php.md, "Storage models").
     */
    public const MODE_DELAYED = 'delayed';

    /** @var Client */
    private $client;

    /** @var int the lock's lease, in ms */
    private $lockTtlMs;

    /** @var int how long read() waits for a held lock, in ms */
    private $waitMs;

    /** @var bool write() uses the delayed write (MODE_DELAYED) */
    private $delayed;

    /** @var string|null the id read() read last (until close) */
    private $id;

    /** @var string the lock's token on $id, "0" when not held */
    private $token = '0';

    /** @var string the version of $id read or written last, "0": none */
    private $version = '0';

    /** @var string the data of $id read or written last */
    private $data = '';

    /** @var string|null the id create_sid() issued last, until it is read or validated */
    private $created;

    /** @var string|null why no node answered: the request's later calls fail at once */
    private $down;

    /**
     * @var bool validateId() read $id with its lock: the read() that PHP
     *   calls next returns what it read
     */
    private $prefetched = false;

    /** @var array{0: string, 1: string}|null [id, why] validateId() could not take $id's lock */
    private $lockFailure;

    /**
     * @param array{lock_ttl_ms?: int, wait_ms?: int, mode?: string} $options
     *   lock_ttl_ms: the lock's lease (30000); wait_ms: how long a read
     *   waits for a held lock (the lease); mode: the storage model,
     *   MODE_WRITE_THROUGH (the default) or MODE_DELAYED
     */
    public function __construct(Client $client, array $options = [])
    {
        $this->client = $client;
        $this->lockTtlMs = self::ms($options, 'lock_ttl_ms', self::DEFAULT_LOCK_TTL_MS);
        $this->waitMs = self::ms($options, 'wait_ms', $this->lockTtlMs);
        $mode = $options['mode'] ?? self::MODE_WRITE_THROUGH;
        if ($mode !== self::MODE_WRITE_THROUGH && $mode !== self::MODE_DELAYED) {
            throw new \InvalidArgumentException('Paddock\\SessionHandler: option mode must be ' . self::MODE_WRITE_THROUGH . ' or ' . self::MODE_DELAYED);
        }
        $this->delayed = $mode === self::MODE_DELAYED;
        foreach (array_keys($options) as $k) {
            if (!in_array($k, ['lock_ttl_ms', 'wait_ms', 'mode'], true)) {
                throw new \InvalidArgumentException("Paddock\\SessionHandler: unknown option $k");
            }
        }
    }

    /** @param array<string, mixed> $options */
    private static function ms(array $options, string $name, int $default): int
    {
        if (!isset($options[$name])) {
            return $default;
        }
        $v = $options[$name];
        if (!is_int($v) || $v <= 0 || $v > self::MAX_MS) {
            throw new \InvalidArgumentException("Paddock\\SessionHandler: option $name must be 1 to " . self::MAX_MS . ' (ms)');
        }
        return $v;
    }

    /**
     * settings reads the handler's settings, the first found winning: the
     * environment (PADDOCK_HTTP_ENDPOINTS, PADDOCK_SESSION_LOCK_TTL,
     * PADDOCK_SESSION_WAIT in seconds, PADDOCK_SESSION_MODE,
     * PADDOCK_SESSION_FOLLOW_LEADER and PADDOCK_SESSION_PERSISTENT on or
     * off), then php.ini through get_cfg_var (paddock.endpoints,
     * paddock.session_lock_ttl, paddock.session_wait, paddock.session_mode,
     * paddock.session_follow_leader, paddock.session_persistent), then the
     * defaults (127.0.0.1:2282, 30 s, the lease, write-through, on, on). A bad value is
     * left for the next source, with a warning in 'warnings'.
     *
     * @param callable(string): (string|false)|null $env the environment (getenv)
     * @param callable(string): (string|false)|null $ini php.ini (get_cfg_var)
     * @return array{endpoints: string, lock_ttl_ms: int, wait_ms: int, mode: string, follow_leader: bool, persistent: bool, warnings: list<string>}
     */
    public static function settings(?callable $env = null, ?callable $ini = null): array
    {
        $sources = [
            ['env', $env ?? static function (string $n) {
                return getenv($n);
            }],
            ['php.ini', $ini ?? static function (string $n) {
                return get_cfg_var($n);
            }],
        ];
        $names = [
            'endpoints' => ['PADDOCK_HTTP_ENDPOINTS', 'paddock.endpoints'],
            'lock_ttl_ms' => ['PADDOCK_SESSION_LOCK_TTL', 'paddock.session_lock_ttl'],
            'wait_ms' => ['PADDOCK_SESSION_WAIT', 'paddock.session_wait'],
            'mode' => ['PADDOCK_SESSION_MODE', 'paddock.session_mode'],
            'follow_leader' => ['PADDOCK_SESSION_FOLLOW_LEADER', 'paddock.session_follow_leader'],
            'persistent' => ['PADDOCK_SESSION_PERSISTENT', 'paddock.session_persistent'],
        ];
        $out = ['endpoints' => Client::DEFAULT_ENDPOINT, 'lock_ttl_ms' => self::DEFAULT_LOCK_TTL_MS,
            'wait_ms' => 0, 'mode' => self::MODE_WRITE_THROUGH, 'follow_leader' => true, 'persistent' => true, 'warnings' => []];
        foreach ($names as $key => $pair) {
            foreach ($sources as $i => [$where, $get]) {
                $name = $pair[$i];
                $v = $get($name);
                if (!is_string($v) || trim($v) === '') {
                    continue;
                }
                $v = trim($v);
                if ($key === 'endpoints') {
                    $out[$key] = $v;
                    break;
                }
                if ($key === 'follow_leader' || $key === 'persistent') {
                    $b = filter_var($v, FILTER_VALIDATE_BOOLEAN, FILTER_NULL_ON_FAILURE);
                    if ($b !== null) {
                        $out[$key] = $b;
                        break;
                    }
                    $out['warnings'][] = "paddock session: $name=\"$v\" ($where) is not on or off: ignored";
                    continue;
                }
                if ($key === 'mode') {
                    $m = strtolower($v);
                    if ($m === self::MODE_WRITE_THROUGH || $m === self::MODE_DELAYED) {
                        $out[$key] = $m;
                        break;
                    }
                    $out['warnings'][] = "paddock session: $name=\"$v\" ($where) is not a storage model (write-through or delayed): ignored";
                    continue;
                }
                if (!preg_match('/^[0-9]+(\.[0-9]+)?$/D', $v) || ($ms = (int) round((float) $v * 1000)) <= 0 || $ms > self::MAX_MS) {
                    $out['warnings'][] = "paddock session: $name=\"$v\" ($where) is not a number of seconds from 0.001 to 600: ignored";
                    continue;
                }
                $out[$key] = $ms;
                break;
            }
        }
        if ($out['wait_ms'] === 0) {
            $out['wait_ms'] = $out['lock_ttl_ms'];
        }
        return $out;
    }

    /**
     * register makes a handler from settings() and installs it with
     * session_set_save_handler (the session is written at shutdown, before
     * objects are destroyed). It returns null, with a warning, when it
     * could not, and PHP keeps its own handler.
     */
    public static function register(): ?self
    {
        $s = self::settings();
        foreach ($s['warnings'] as $w) {
            trigger_error($w, E_USER_WARNING);
        }
        try {
            // Every web-session call is decided on the leader: calling it
            // directly saves a follower's forwarding hop, and the file
            // lets the next request start there too. Kept connections
            // spare each page view a connection and curl's setup.
            $options = ['persistent' => $s['persistent']];
            if ($s['follow_leader']) {
                $options += ['follow_leader' => true, 'leader_file' => self::leaderFile($s['endpoints'])];
            }
            $client = new Client($s['endpoints'], $options);
            $h = new self($client, ['lock_ttl_ms' => $s['lock_ttl_ms'], 'wait_ms' => $s['wait_ms'], 'mode' => $s['mode']]);
        } catch (\LogicException $e) { // no curl, no endpoints
            trigger_error('paddock session: sessions are not stored in Paddock: ' . $e->getMessage(), E_USER_WARNING);
            return null;
        }
        if (!session_set_save_handler($h, true)) {
            trigger_error('paddock session: sessions are not stored in Paddock: session_set_save_handler failed (session.auto_start on, or a session already started?)', E_USER_WARNING);
            return null;
        }
        return $h;
    }

    /**
     * leaderFile is where register()'s client keeps the leader's address
     * between requests: one file per user and endpoint list in the
     * temporary directory, shared by the web server's PHP processes.
     */
    public static function leaderFile(string $endpoints): string
    {
        $uid = function_exists('posix_geteuid') ? posix_geteuid() : getmyuid();
        return rtrim(sys_get_temp_dir(), '/') . '/paddock-leader-' . $uid . '-' . substr(md5($endpoints), 0, 16);
    }

    /** client is the handler's client. */
    public function client(): Client
    {
        return $this->client;
    }

    /** lockToken is the token of the lock held on the session read ("0": none). */
    public function lockToken(): string
    {
        return $this->token;
    }

    /** mode is the handler's storage model: MODE_WRITE_THROUGH or MODE_DELAYED. */
    public function mode(): string
    {
        return $this->delayed ? self::MODE_DELAYED : self::MODE_WRITE_THROUGH;
    }

    /** version is the version of the session read or written last ("0": none). */
    public function version(): string
    {
        return $this->version;
    }

    // ---- SessionHandlerInterface -----------------------------------------

    /**
     * open has nothing to open: session.save_path is ignored (it may still
     * hold the files handler's directory).
     *
     * @param string $path
     * @param string $name
     */
    public function open($path, $name): bool
    {
        return true;
    }

    /**
     * read takes the session's lock and returns its data ('' for a new
     * session), or false with a warning when the lock stayed held past the
     * wait or no node answered.
     *
     * @param string $id
     * @return string|false
     */
    #[\ReturnTypeWillChange]
    public function read($id)
    {
        $id = (string) $id;
        if ($id === $this->created) {
            $this->created = null;
        }
        $prefetched = $this->prefetched;
        $this->prefetched = false;
        if ($prefetched && $id === $this->id) {
            return $this->data;
        }
        if ($this->lockFailure !== null) {
            [$failedId, $why] = $this->lockFailure;
            $this->lockFailure = null;
            if ($failedId === $id) {
                return $this->fail('cannot read the session', $why);
            }
        }
        if ($this->down !== null) {
            return $this->fail('cannot read the session', $this->down);
        }
        // session_reset() reads again the session whose lock this request
        // holds: waiting for that lock would be waiting for itself.
        $again = $this->token !== '0' && $id === $this->id;
        if (!$again) {
            $this->releaseHeld();
        }
        try {
            $r = $this->client->readWebSession($id, !$again, $this->lockTtlMs, $this->waitMs);
        } catch (AbortedException $e) {
            return $this->fail('cannot read the session', $this->lockedMessage($e));
        } catch (\Throwable $e) {
            return $this->failOn('cannot read the session', $e);
        }
        $this->id = $id;
        if (!$again) {
            $this->token = $r['token'];
        }
        $this->version = $r['version'];
        $this->data = $r['data'];
        return $r['data'];
    }

    /**
     * write stores the session's data with the version read: refused (false,
     * with a warning) when the session changed since. It releases the lock.
     * In MODE_DELAYED the cluster answers once its leader holds the data,
     * before it is committed.
     * Data equal to what was read is an access only (session.lazy_write
     * off): nothing is written to the log.
     *
     * @param string $id
     * @param string $data
     */
    public function write($id, $data): bool
    {
        $id = (string) $id;
        $data = (string) $data;
        if ($id !== $this->id) {
            return $this->fail('cannot write the session', 'it was not read by this request');
        }
        if ($this->down !== null) {
            return $this->fail('cannot write the session', $this->down);
        }
        try {
            if ($this->version !== '0' && $data === $this->data) {
                $this->client->touchWebSession($id, $this->token, self::lifetimeMs());
            } else {
                $this->version = $this->client->writeWebSession($id, $data, $this->version, $this->token, self::lifetimeMs(), false, $this->delayed);
                $this->data = $data;
            }
        } catch (FailedPreconditionException $e) {
            return $this->fail('the session was not saved', 'it changed since this request read it, or another request holds its lock (this request\'s lock lease of '
                . $this->lockTtlMs . ' ms ran out?): ' . $e->getMessage());
        } catch (\Throwable $e) {
            return $this->failOn('the session was not saved', $e);
        }
        $this->token = '0';
        return true;
    }

    /**
     * close releases the lock if this request still holds it
     * (read_and_close, session_abort, a failed write).
     */
    public function close(): bool
    {
        $this->prefetched = false;
        $this->lockFailure = null;
        $this->releaseHeld();
        return true;
    }

    /**
     * destroy deletes the session (session_destroy, session_regenerate_id(true)),
     * releasing its lock.
     *
     * @param string $id
     */
    public function destroy($id): bool
    {
        $id = (string) $id;
        if ($this->down !== null) {
            return $this->fail('cannot destroy the session', $this->down);
        }
        $token = $id === $this->id ? $this->token : '0';
        try {
            $this->client->destroyWebSession($id, $token);
        } catch (\Throwable $e) {
            return $this->failOn('cannot destroy the session', $e);
        }
        if ($id === $this->id) {
            $this->forget();
        }
        return true;
    }

    /**
     * gc has nothing to collect: the cluster's leader expires idle
     * sessions itself.
     *
     * @param int $max_lifetime
     */
    public function gc($max_lifetime): int
    {
        return 0;
    }

    // ---- SessionIdInterface ----------------------------------------------

    /**
     * create_sid issues a new id (128 random bits, session.sid_bits_per_character),
     * stored as an empty session so that strict mode accepts it. When the
     * cluster cannot, it warns and returns a locally made id: PHP's session
     * module cannot take false here, and the read that follows fails (no
     * node) or creates the session at its write.
     */
    public function create_sid(): string
    {
        $bits = (int) ini_get('session.sid_bits_per_character');
        if ($this->down === null) {
            try {
                $this->created = $this->client->createWebSession(in_array($bits, [4, 5, 6], true) ? $bits : 4, self::lifetimeMs());
                return $this->created;
            } catch (\Throwable $e) {
                $this->failOn('cannot issue a session id in the cluster, using a local one', $e);
            }
        }
        $this->created = self::localId($bits);
        return $this->created;
    }

    // ---- SessionUpdateTimestampHandlerInterface --------------------------

    /**
     * validateId says whether a session with this id exists
     * (session.use_strict_mode).
     *
     * PHP calls it just before read() of the same id, so it does read()'s
     * work: it takes the lock and reads, and read() returns what it read
     * (one call to the cluster instead of two). A session that does not
     * exist has its lock released at once (PHP issues a new id). When the
     * lock stays held past the wait, the session is said to exist and
     * read() fails with the warning: a busy session is not replaced by a
     * new, empty one.
     *
     * The id create_sid() has just issued is not "taken": PHP's
     * session_regenerate_id() and session_create_id() ask right after
     * create_sid() whether the new id collides with an existing session,
     * and the cluster issued it to this request alone.
     *
     * @param string $id
     */
    public function validateId($id): bool
    {
        $id = (string) $id;
        if ($id === $this->created) {
            $this->created = null;
            return false;
        }
        if (!preg_match('/^[a-zA-Z0-9,-]{1,256}$/D', $id)) {
            return false; // never issued: PHP issues a new id
        }
        if ($this->down !== null) {
            return false;
        }
        if ($this->token !== '0' && $id === $this->id) {
            return $this->version !== '0'; // this request holds its lock
        }
        $this->releaseHeld();
        try {
            $r = $this->client->readWebSession($id, true, $this->lockTtlMs, $this->waitMs);
        } catch (AbortedException $e) {
            $this->lockFailure = [$id, $this->lockedMessage($e)];
            return true;
        } catch (\Throwable $e) {
            if ($e instanceof UnavailableException || $e instanceof TimeoutException) {
                return $this->failOn('cannot validate the session id', $e);
            }
            // Any other failure: the id may well be valid. Saying no
            // would give the user a new, empty session (a silent logout):
            // say yes, and let the read that follows fail with the reason.
            $this->lockFailure = [$id, 'cannot validate the session id: ' . $e->getMessage()];
            return true;
        }
        if (!$r['found']) {
            try {
                $this->client->releaseWebSession($id, $r['token']);
            } catch (\Throwable $e) {
                $this->failOn("cannot release the lock of an unknown session id (its lease of {$this->lockTtlMs} ms frees it)", $e);
            }
            return false;
        }
        $this->id = $id;
        $this->token = $r['token'];
        $this->version = $r['version'];
        $this->data = $r['data'];
        $this->prefetched = true;
        return true;
    }

    /**
     * updateTimestamp counts an access of an unchanged session
     * (session.lazy_write) and releases the lock: no write to the log.
     *
     * @param string $id
     * @param string $data
     */
    public function updateTimestamp($id, $data): bool
    {
        $id = (string) $id;
        if ($this->down !== null) {
            return $this->fail('cannot update the session\'s access time', $this->down);
        }
        $token = $id === $this->id ? $this->token : '0';
        try {
            $this->client->touchWebSession($id, $token, self::lifetimeMs());
        } catch (\Throwable $e) {
            return $this->failOn('cannot update the session\'s access time', $e);
        }
        if ($id === $this->id) {
            $this->token = '0';
        }
        return true;
    }

    // ---- helpers ---------------------------------------------------------

    /** releaseHeld releases a lock this request still holds, and forgets its session. */
    private function releaseHeld(): void
    {
        if ($this->token !== '0' && $this->id !== null && $this->down === null) {
            try {
                $this->client->releaseWebSession($this->id, $this->token);
            } catch (\Throwable $e) {
                $this->failOn("cannot release the session's lock (its lease of {$this->lockTtlMs} ms frees it)", $e);
            }
        }
        $this->forget();
    }

    /** lockedMessage is the warning's reason when the lock stayed held past the wait. */
    private function lockedMessage(AbortedException $e): string
    {
        return "another request held its lock for more than {$this->waitMs} ms (" . $e->getMessage() . ')';
    }

    /** forget drops what this request knows of the session it read. */
    private function forget(): void
    {
        $this->id = null;
        $this->token = '0';
        $this->version = '0';
        $this->data = '';
    }

    /** lifetimeMs is session.gc_maxlifetime in ms (0: the cluster's default). */
    private static function lifetimeMs(): int
    {
        $s = (int) ini_get('session.gc_maxlifetime');
        // The cluster takes at most ten years.
        return $s > 0 ? min($s, 315360000) * 1000 : 0;
    }

    /**
     * failOn warns of $e and returns false; an error that means no node
     * answered makes the request's later calls fail at once instead of
     * waiting for the cluster again.
     */
    private function failOn(string $what, \Throwable $e): bool
    {
        $why = $e->getMessage();
        if ($e instanceof UnavailableException || $e instanceof TimeoutException) {
            $this->down = "no Paddock node answered: $why";
            $why = $this->down;
        } elseif (!$e instanceof PaddockException && !$e instanceof \InvalidArgumentException) {
            $why = get_class($e) . ": $why";
        }
        return $this->fail($what, $why);
    }

    /** fail warns with E_USER_WARNING and returns false. */
    private function fail(string $what, string $why): bool
    {
        trigger_error("paddock session: $what: $why", E_USER_WARNING);
        return false;
    }

    /**
     * localId is a session id made here: 128 random bits written with
     * $bits bits per character, as the cluster writes them.
     */
    private static function localId(int $bits): string
    {
        $alphabet = [5 => '0123456789abcdefghijklmnopqrstuv',
            6 => '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ,-'][$bits] ?? null;
        if ($alphabet === null) {
            return bin2hex(random_bytes(16));
        }
        $bin = '';
        foreach (str_split(random_bytes(16)) as $byte) {
            $bin .= str_pad(decbin(ord($byte)), 8, '0', STR_PAD_LEFT);
        }
        $id = '';
        foreach (str_split($bin, $bits) as $chunk) {
            $id .= $alphabet[bindec(str_pad($chunk, $bits, '0'))];
        }
        return $id;
    }
}
