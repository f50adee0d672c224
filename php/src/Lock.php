<?php

declare(strict_types=1);

namespace Paddock;

/**
 * Lock is one session's place in a named lock: a mutex, or with a limit
 * N a semaphore that N sessions hold at once, each with a fencing token.
 *
 * Holders and waiters are ephemeral znodes under /paddock/locks/NAME
 * owned by the Lease; the first limit of them hold. The first acquire of
 * a lock fixes its limit; another limit is refused
 * (FailedPreconditionException) while anyone holds or waits. The token
 * is the place's znode czxid; pass fence() with a write that must happen
 * only while the lock is held.
 *
 *     $lock = new Lock($client, 'reindex', $lease);
 *     if ($lock->acquire(5000)) {
 *         try { ... } finally { $lock->release(); }
 *     }
 */
final class Lock
{
    /** @var Client */
    private $client;

    /** @var string */
    private $name;

    /** @var Lease */
    private $lease;

    /** @var int */
    private $limit;

    /** @var array<string, mixed>|null this session's place, once known */
    private $holder;

    /** @var bool whether the place held the lock at the last answer */
    private $held = false;

    /** @var int|null places ahead of this one at the last answer */
    private $position;

    /** @var int the lock-delay left at the last answer, ms */
    private $lockDelayMs = 0;

    /**
     * @param string $name the lock: one znode name, no '/'
     * @param Lease $lease the session that owns the place
     * @param int $limit how many hold at once (1: a mutex)
     */
    public function __construct(Client $client, string $name, Lease $lease, int $limit = 1)
    {
        if ($limit < 1) {
            throw new \InvalidArgumentException("Paddock\\Lock: limit $limit: want 1 or more");
        }
        $this->client = $client;
        $this->name = $name;
        $this->lease = $lease;
        $this->limit = $limit;
    }

    /** name is the lock's name. */
    public function name(): string
    {
        return $this->name;
    }

    /** limit is how many hold the lock at once (the lock's, after an answer). */
    public function limit(): int
    {
        return $this->limit;
    }

    /**
     * acquire takes a place in line (or finds this session's) and waits
     * up to $timeoutMs to hold the lock, returning whether it holds. It
     * never blocks longer than $timeoutMs plus the client's margin. Not
     * holding in time, the place stays in line: call acquire again, or
     * release() to leave.
     *
     * @param string $value shown to people reading the lock (who holds it)
     */
    public function acquire(int $timeoutMs = 10000, string $value = ''): bool
    {
        return $this->record($this->client->acquire($this->name, $this->lease->id(), $this->limit, $timeoutMs, $value));
    }

    /**
     * tryAcquire takes the lock only if it is free now; otherwise nothing
     * changes (no place in line) and it returns false.
     */
    public function tryAcquire(string $value = ''): bool
    {
        return $this->record($this->client->tryAcquire($this->name, $this->lease->id(), $this->limit, $value));
    }

    /** @param array<string, mixed> $r */
    private function record(array $r): bool
    {
        $this->holder = $r['holder'] ?? null;
        $this->held = (bool) ($r['acquired'] ?? false);
        $this->position = isset($r['holder']) ? (int) ($r['position'] ?? 0) : null;
        $this->lockDelayMs = (int) ($r['lock_delay_ms'] ?? 0);
        if (!empty($r['limit'])) {
            $this->limit = (int) $r['limit'];
        }
        return $this->held;
    }

    /** isHeld reports whether the lock was held at the last answer. */
    public function isHeld(): bool
    {
        return $this->held;
    }

    /** token is the place's fencing token (null without a place). */
    public function token(): ?string
    {
        return isset($this->holder['token']) ? (string) $this->holder['token'] : null;
    }

    /** key is the place's znode path (null without a place). */
    public function key(): ?string
    {
        return isset($this->holder['key']) ? (string) $this->holder['key'] : null;
    }

    /** position is how many places were ahead at the last answer (below limit: held). */
    public function position(): ?int
    {
        return $this->position;
    }

    /**
     * lockDelayMs, when above 0, is how much longer a slot is held by no
     * one after the last acquire: a holder's session expired with a
     * lock-delay.
     */
    public function lockDelayMs(): int
    {
        return $this->lockDelayMs;
    }

    /**
     * fence is the fence to pass with a write: applied only while this
     * place holds the lock.
     *
     * @return array{name: string, token: string}
     */
    public function fence(): array
    {
        if (!$this->held || $this->token() === null) {
            throw new \LogicException("Paddock\\Lock: {$this->name} is not held: acquire first");
        }
        return ['name' => 'locks/' . $this->name, 'token' => $this->token()];
    }

    /**
     * holders lists the lock's 'holders' and 'waiters' (oldest first),
     * its 'limit' and 'lock_delay_ms', as the cluster has them.
     *
     * @return array<string, mixed>
     */
    public function holders(): array
    {
        return $this->client->getLock($this->name);
    }

    /**
     * release gives up the place at once, holding or waiting: the next
     * one holds without a lock-delay. Nothing happens without a place.
     */
    public function release(): void
    {
        $token = $this->token();
        if ($token === null) {
            return;
        }
        try {
            $this->client->release($this->name, $token);
        } catch (Exception\FailedPreconditionException $e) {
            // not held: the place is gone already (session ended)
        }
        $this->holder = null;
        $this->held = false;
        $this->position = null;
    }
}
