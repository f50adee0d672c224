<?php

declare(strict_types=1);

namespace Paddock\Tests;

use Paddock\Client;
use Paddock\Lease;
use PHPUnit\Framework\TestCase;

/**
 * ClusterTestCase is the base of the tests that talk to a running cluster
 * (PADDOCK_HTTP_ENDPOINTS): a fresh name per test, and the leases a test
 * opened are closed after it.
 */
abstract class ClusterTestCase extends TestCase
{
    /** @var list<Lease> */
    private $leases = [];

    /** endpoints returns the cluster's HTTP endpoints, or skips the test. */
    protected static function endpoints(): string
    {
        $eps = getenv('PADDOCK_HTTP_ENDPOINTS');
        if ($eps === false || $eps === '') {
            self::markTestSkipped('needs a cluster: set PADDOCK_HTTP_ENDPOINTS (go test -run TestPHPUnit ./e2e starts one and runs these tests)');
        }
        return $eps;
    }

    protected function client(array $options = []): Client
    {
        return self::newClient(self::endpoints(), $options);
    }

    /**
     * newClient is new Client, over kept connections (option persistent)
     * when PADDOCK_TEST_PERSISTENT is 1 and the test does not say: the
     * e2e test runs these tests both ways.
     *
     * @param list<string>|string|null $endpoints
     */
    protected static function newClient($endpoints = null, array $options = []): Client
    {
        if (getenv('PADDOCK_TEST_PERSISTENT') === '1') {
            $options += ['persistent' => true];
        }
        return new Client($endpoints, $options);
    }

    /** unique is a name no other test (or earlier run) uses. */
    protected static function unique(string $prefix): string
    {
        return $prefix . '-' . bin2hex(random_bytes(6));
    }

    /** lease opens a lease closed after the test. */
    protected function lease(Client $c, int $timeoutMs = 10000, int $lockDelayMs = -1): Lease
    {
        $l = Lease::open($c, $timeoutMs, $lockDelayMs);
        $this->leases[] = $l;
        return $l;
    }

    protected function tearDown(): void
    {
        foreach ($this->leases as $l) {
            try {
                $l->close();
            } catch (\Throwable $e) {
                // the test's own failure matters more
            }
        }
        $this->leases = [];
    }

    /** ms is the time since $start (hrtime(true)) in ms. */
    protected static function ms(int $start): int
    {
        return intdiv(hrtime(true) - $start, 1000000);
    }

    /**
     * eventually calls $cond every 50 ms until it returns true or $ms pass,
     * and fails the test with $what if it never did.
     */
    protected static function eventually(int $ms, string $what, callable $cond): void
    {
        $deadline = hrtime(true) + $ms * 1000000;
        while (!$cond()) {
            if (hrtime(true) > $deadline) {
                self::fail("$what: not after $ms ms");
            }
            usleep(50000);
        }
    }
}
