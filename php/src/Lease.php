<?php

declare(strict_types=1);

namespace Paddock;

use Paddock\Exception\NotFoundException;
use Paddock\Exception\SessionExpiredException;

/**
 * Lease is a Paddock session: it owns ephemeral znodes, election
 * candidates and lock places, and ends (deleting them) when it is closed
 * or when no keepalive reaches the cluster within its timeout. (Not PHP's
 * $_SESSION, which Paddock's web-session store serves.)
 *
 * PHP has no background thread: call keepAliveIfDue() often (between
 * work steps), or keepAlive() about three times per timeout. A Campaign
 * or an Acquire that is waiting renews the session itself.
 *
 *     $lease = Lease::open($client, 10000);
 *     $client->create('/workers/w-', 'me', ['type' => 'ephemeral', 'sequential' => true, 'session' => $lease]);
 *     ...
 *     $lease->keepAliveIfDue();
 *     ...
 *     $lease->close();
 */
final class Lease
{
    /** @var Client */
    private $client;

    /** @var string */
    private $id;

    /** @var int the granted timeout, ms */
    private $timeoutMs;

    /** @var int hrtime (ns) when the last renewal was sent */
    private $renewedAt;

    /** @var bool */
    private $closed = false;

    private function __construct(Client $client, string $id, int $timeoutMs, int $renewedAt)
    {
        $this->client = $client;
        $this->id = $id;
        $this->timeoutMs = $timeoutMs;
        $this->renewedAt = $renewedAt;
    }

    /**
     * open opens a session.
     *
     * @param int $timeoutMs wanted timeout (the cluster clamps it to its
     *   --min-session-timeout and --max-session-timeout; 0: its default)
     * @param int $lockDelayMs Consul's lock-delay: after the session
     *   expires while leading or holding a lock, no one gets it for this
     *   long (0: the agent's --lock-delay, -1: none)
     */
    public static function open(Client $client, int $timeoutMs = 10000, int $lockDelayMs = 0): self
    {
        $sent = hrtime(true);
        $r = $client->openSession($timeoutMs, $lockDelayMs);
        return new self($client, (string) $r['session_id'], (int) $r['timeout_ms'], $sent);
    }

    /**
     * attach takes over a session opened elsewhere (e.g. by an earlier
     * request that stored its id), renewing it at once: SessionExpiredException
     * when it is gone.
     */
    public static function attach(Client $client, string $id): self
    {
        $sent = hrtime(true);
        $r = $client->keepAlive($id);
        return new self($client, $id, (int) $r['timeout_ms'], $sent);
    }

    /** id is the session id (a uint64 as a decimal string). */
    public function id(): string
    {
        return $this->id;
    }

    /** timeoutMs is the timeout the cluster granted. */
    public function timeoutMs(): int
    {
        return $this->timeoutMs;
    }

    /** client is the Client the lease talks through. */
    public function client(): Client
    {
        return $this->client;
    }

    /**
     * keepAlive renews the session now. SessionExpiredException when the
     * cluster no longer holds it: everything it owned is gone.
     */
    public function keepAlive(): void
    {
        $sent = hrtime(true);
        try {
            $r = $this->client->keepAlive($this->id);
        } catch (NotFoundException $e) {
            throw new SessionExpiredException("session expired or unknown: {$this->id}", 9, $e->getHttpStatus(), [], $e->getServedBy(), $e);
        }
        $this->timeoutMs = (int) ($r['timeout_ms'] ?? $this->timeoutMs);
        $this->renewedAt = $sent;
    }

    /**
     * keepAliveIfDue renews the session when a third of its timeout has
     * passed since the last renewal, and reports whether it did.
     */
    public function keepAliveIfDue(): bool
    {
        if ($this->sinceRenewalMs() < intdiv($this->timeoutMs, 3)) {
            return false;
        }
        $this->keepAlive();
        return true;
    }

    /**
     * sinceRenewalMs is how long ago the last renewal this object knows of
     * was sent: once it passes timeoutMs() the session may be gone.
     */
    public function sinceRenewalMs(): int
    {
        return intdiv(hrtime(true) - $this->renewedAt, 1000000);
    }

    /**
     * close ends the session: its ephemerals, candidates and lock places
     * go at once (no lock-delay). Closing twice, or a session that already
     * expired, is not an error.
     */
    public function close(): void
    {
        if ($this->closed) {
            return;
        }
        $this->closed = true;
        try {
            $this->client->closeSession($this->id);
        } catch (NotFoundException | SessionExpiredException $e) {
            // already gone
        }
    }
}
