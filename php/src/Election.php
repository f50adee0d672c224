<?php

declare(strict_types=1);

namespace Paddock;

/**
 * Election is one session's candidacy in a named election, with its
 * fencing token.
 *
 * Candidates are ephemeral znodes under /paddock/elections/NAME owned by
 * the Lease; the oldest leads. Campaign is idempotent per (election,
 * session): calling it again finds the same candidate in the same place,
 * so a worker loops on campaign() (a long poll that renews the session
 * while it waits) until it leads. The token is the candidate znode's
 * czxid: a later leader always has a larger one. Pass fence() with every
 * write the leader makes: Paddock refuses it (FenceLostException) once
 * this candidate no longer leads, so a leader that was paused, or cut off
 * past its session, cannot overwrite its successor's work.
 *
 *     $election = new Election($client, 'batch', $lease);
 *     while (!$election->campaign('worker-1', 5000)) {
 *         // still in line; the session was renewed while waiting
 *     }
 *     $client->set('/jobs/state', 'done', ['fence' => $election->fence()]);
 */
final class Election
{
    /** @var Client */
    private $client;

    /** @var string */
    private $name;

    /** @var Lease */
    private $lease;

    /** @var array<string, mixed>|null this session's candidate, once known */
    private $candidate;

    /** @var bool whether the candidate led at the last answer */
    private $leading = false;

    /** @var int|null candidates ahead of this one at the last campaign */
    private $position;

    /** @var int the lock-delay left at the last campaign, ms */
    private $lockDelayMs = 0;

    /**
     * @param string $name the election: one znode name, no '/'
     * @param Lease $lease the session that owns the candidate
     */
    public function __construct(Client $client, string $name, Lease $lease)
    {
        $this->client = $client;
        $this->name = $name;
        $this->lease = $lease;
    }

    /** name is the election's name. */
    public function name(): string
    {
        return $this->name;
    }

    /**
     * campaign enters the election (or finds this session's candidate)
     * and waits up to $timeoutMs to lead, returning whether it leads. It
     * never blocks longer than $timeoutMs plus the client's margin. Not
     * elected in time, the candidate stays in line: call campaign again.
     * SessionExpiredException when the lease is gone.
     *
     * @param string $value what leader() shows while this candidate leads
     */
    public function campaign(string $value = '', int $timeoutMs = 10000): bool
    {
        $r = $this->client->campaign($this->name, $this->lease->id(), $value, $timeoutMs);
        $this->candidate = $r['candidate'];
        $this->leading = (bool) ($r['elected'] ?? false);
        $this->position = (int) ($r['position'] ?? 0);
        $this->lockDelayMs = (int) ($r['lock_delay_ms'] ?? 0);
        return $this->leading;
    }

    /**
     * isLeader reports whether this candidate led at the last answer
     * (campaign, proclaim). Only the cluster knows whether it still does:
     * a fenced write asks it.
     */
    public function isLeader(): bool
    {
        return $this->leading;
    }

    /** token is the candidate's fencing token (null before campaign). */
    public function token(): ?string
    {
        return isset($this->candidate['token']) ? (string) $this->candidate['token'] : null;
    }

    /** key is the candidate's znode path (null before campaign). */
    public function key(): ?string
    {
        return isset($this->candidate['key']) ? (string) $this->candidate['key'] : null;
    }

    /** position is how many candidates were ahead at the last campaign (0 when leading). */
    public function position(): ?int
    {
        return $this->position;
    }

    /**
     * lockDelayMs, when above 0, is how much longer no one leads after
     * the last campaign: a leader's session expired with a lock-delay.
     */
    public function lockDelayMs(): int
    {
        return $this->lockDelayMs;
    }

    /**
     * fence is the fence to pass with a write ('fence' => $e->fence()):
     * the write is applied only while this candidate leads.
     *
     * @return array{name: string, token: string}
     */
    public function fence(): array
    {
        if (!$this->leading || $this->token() === null) {
            throw new \LogicException("Paddock\\Election: not the leader of {$this->name}: campaign first");
        }
        return ['name' => 'elections/' . $this->name, 'token' => $this->token()];
    }

    /**
     * lost records that this candidate no longer leads (a fenced write got
     * FenceLostException, or the session expired): fence() then refuses
     * until the next elected campaign.
     */
    public function lost(): void
    {
        $this->leading = false;
    }

    /**
     * leader returns the election's current leader (key, value, token,
     * session_id, mod_zxid, ctime), or null when no one leads.
     *
     * @return array<string, mixed>|null
     */
    public function leader(): ?array
    {
        return $this->client->leader($this->name);
    }

    /**
     * poll waits up to $timeoutMs for a leader other than $known (from
     * leader() or an earlier poll; null: none) and returns
     * ['changed' => bool, 'leader' => ?array].
     *
     * @param array<string, mixed>|null $known
     * @return array{changed: bool, leader: array<string, mixed>|null}
     */
    public function poll(?array $known, int $timeoutMs = 30000): array
    {
        return $this->client->pollLeader($this->name, $known, $timeoutMs);
    }

    /**
     * observe calls $fn with the leader (null: none), first as it is,
     * then after each change (a new leader, a proclaimed value, no
     * leader), until $fn returns false or $forMs pass: it never blocks
     * longer than $forMs (its last poll ends up to the client's margin
     * earlier). Changes that undo each other between two polls may be
     * missed, never the state after them.
     *
     * @param callable(array<string, mixed>|null): (bool|null) $fn
     */
    public function observe(callable $fn, int $forMs, int $pollMs = 30000): void
    {
        $deadline = hrtime(true) + $forMs * 1000000;
        $known = $this->leader();
        if ($fn($known) === false) {
            return;
        }
        for (;;) {
            $left = intdiv($deadline - hrtime(true), 1000000) - $this->client->marginMs();
            if ($left <= 0) {
                return;
            }
            $r = $this->poll($known, min($pollMs, $left));
            if ($r['changed']) {
                $known = $r['leader'];
                if ($fn($known) === false) {
                    return;
                }
            }
        }
    }

    /**
     * proclaim sets the leader's value (FenceLostException when this
     * candidate no longer leads).
     */
    public function proclaim(string $value): void
    {
        try {
            $this->candidate = $this->client->proclaim($this->name, (string) $this->fence()['token'], $value);
        } catch (Exception\FenceLostException $e) {
            $this->leading = false;
            throw $e;
        }
    }

    /**
     * resign removes the candidate at once, leading or waiting: the next
     * one leads without a lock-delay. Nothing happens before campaign.
     */
    public function resign(): void
    {
        $token = $this->token();
        if ($token === null) {
            return;
        }
        try {
            $this->client->resign($this->name, $token);
        } catch (Exception\FailedPreconditionException $e) {
            // not held: the candidate is gone already (session ended)
        }
        $this->candidate = null;
        $this->leading = false;
        $this->position = null;
    }
}
