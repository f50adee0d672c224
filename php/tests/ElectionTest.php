<?php

declare(strict_types=1);

namespace Paddock\Tests;

use Paddock\Client;
use Paddock\Election;
use Paddock\Exception\FenceLostException;
use Paddock\Exception\InvalidArgumentException;
use Paddock\Exception\SessionExpiredException;

final class ElectionTest extends ClusterTestCase
{
    public function testCampaignFenceResign(): void
    {
        $c = $this->client();
        $name = self::unique('batch');
        $a = new Election($c, $name, $this->lease($c));
        $b = new Election($c, $name, $this->lease($c));
        $this->assertNull($a->leader());

        $this->assertTrue($a->campaign('worker-a', 2000));
        $this->assertTrue($a->isLeader());
        $this->assertSame(0, $a->position());
        $this->assertMatchesRegularExpression('/^[1-9][0-9]*$/', $a->token());
        $this->assertStringStartsWith("/paddock/elections/$name/", $a->key());
        $this->assertSame(['name' => "elections/$name", 'token' => $a->token()], $a->fence());

        // Not elected in time: false after about the wait, never much later.
        $start = hrtime(true);
        $this->assertFalse($b->campaign('worker-b', 500));
        $ms = self::ms($start);
        $this->assertGreaterThanOrEqual(450, $ms);
        $this->assertLessThan(500 + $c->marginMs(), $ms, 'campaign blocked longer than asked');
        $this->assertSame(1, $b->position());
        $this->assertFalse($b->isLeader());
        $this->assertSame(1, Client::cmpUint($b->token(), $a->token()), 'a later candidate has a larger token');

        $leader = $a->leader();
        $this->assertSame($a->token(), $leader['token']);
        $this->assertSame('worker-a', $leader['value']);
        $this->assertSame($a->key(), $leader['key']);

        // The leader works with its fence and proclaims.
        $job = '/' . self::unique('job');
        $c->create($job, 'started', ['fence' => $a->fence()]);
        $a->proclaim('worker-a busy');
        $this->assertSame('worker-a busy', $b->leader()['value']);

        // A poll knowing the current leader times out unchanged...
        $known = $b->leader();
        $r = $b->poll($known, 200);
        $this->assertFalse($r['changed']);
        // ...and returns at once after a change.
        $a->resign();
        $this->assertNull($a->token());
        $r = $b->poll($known, 5000);
        $this->assertTrue($r['changed']);

        $this->assertTrue($b->campaign('worker-b', 2000));
        $this->assertSame($b->token(), $b->leader()['token']);

        // The old leader's token is refused: nothing changes.
        $old = ['name' => "elections/$name", 'token' => $known['token']];
        try {
            $c->set($job, 'late', ['fence' => $old]);
            $this->fail('a write fenced with a resigned token succeeded');
        } catch (FenceLostException $e) {
            $this->assertSame(9, $e->getCode());
            $this->assertSame(412, $e->getHttpStatus());
            $this->assertStringContainsString('fence lost', $e->getMessage());
        }
        $this->assertSame('started', $c->get($job)['data']);
        $c->set($job, 'done', ['fence' => $b->fence()]);
        $c->delete($job, ['fence' => $b->fence()]);
        $this->assertFalse($c->exists($job));
    }

    public function testCampaignIsIdempotentPerSession(): void
    {
        $c = $this->client();
        $name = self::unique('idem');
        $lease = $this->lease($c);
        $e1 = new Election($c, $name, $lease);
        $e2 = new Election($c, $name, $lease);
        $this->assertTrue($e1->campaign('x', 1000));
        $this->assertTrue($e2->campaign('x', 1000));
        $this->assertSame($e1->token(), $e2->token());
        $this->assertSame($e1->key(), $e2->key());
    }

    public function testFenceBeforeElectedIsRefused(): void
    {
        $c = $this->client();
        $e = new Election($c, self::unique('e'), $this->lease($c));
        $this->expectException(\LogicException::class);
        $e->fence();
    }

    public function testBadName(): void
    {
        $c = $this->client();
        $this->expectException(InvalidArgumentException::class);
        (new Election($c, str_repeat('n', 5000), $this->lease($c)))->campaign('', 500);
    }

    public function testExpiredLeaderIsReplaced(): void
    {
        $c = $this->client();
        $name = self::unique('expiry');
        $a = new Election($c, $name, $this->lease($c, 2000));
        $b = new Election($c, $name, $this->lease($c, 10000));
        $this->assertTrue($a->campaign('a', 1000));
        $this->assertFalse($b->campaign('b', 500));

        // a stops renewing (a paused or dead worker): b leads within the
        // session timeout and a second, its waiting campaign renewing b.
        $start = hrtime(true);
        $this->assertTrue($b->campaign('b', 2000 + 5000));
        $ms = self::ms($start);
        $this->assertLessThan(2000 + 1000, $ms, 'the next candidate led later than the session timeout + 1 s');
        $this->assertSame(1, Client::cmpUint($b->token(), $a->token()));

        try {
            $c->create('/' . self::unique('late'), '', ['fence' => $a->fence()]);
            $this->fail('the expired leader\'s fenced write succeeded');
        } catch (FenceLostException $e) {
            $a->lost();
        }
        $this->assertFalse($a->isLeader());
        $this->expectException(SessionExpiredException::class);
        $a->campaign('a', 500);
    }

    public function testLockDelay(): void
    {
        $c = $this->client();
        $name = self::unique('delay');
        $a = new Election($c, $name, $this->lease($c, 2000, 1500));
        $b = new Election($c, $name, $this->lease($c, 10000));
        $this->assertTrue($a->campaign('a', 1000));
        $this->assertSame(0, $a->lockDelayMs());

        // a's session expires while it leads: for 1.5 s no one leads.
        $delayed = 0;
        $start = hrtime(true);
        while (!$b->campaign('b', 500)) {
            $returned = hrtime(true);
            $remaining = $b->lockDelayMs();
            $delayed = max($delayed, $remaining);
            $leader = $b->leader();
            // Only while the delay this campaign reported has clearly not
            // run out since it answered: b is in line and leads the moment
            // it ends.
            if ($remaining > self::ms($returned) + 250) {
                $this->assertNull($leader, 'someone leads during the lock-delay');
            }
            $this->assertLessThan(2000 + 1500 + 5000, self::ms($start), 'b never led');
        }
        $this->assertGreaterThan(0, $delayed, 'no campaign reported the lock-delay');
        $this->assertLessThanOrEqual(1500, $delayed);
        $this->assertSame(0, $b->lockDelayMs());
    }

    public function testObserve(): void
    {
        $c = $this->client();
        $name = self::unique('obs');
        $a = new Election($c, $name, $this->lease($c));
        $this->assertTrue($a->campaign('first', 1000));
        $seen = [];
        $a->observe(function (?array $leader) use (&$seen, $a): bool {
            $seen[] = $leader === null ? null : $leader['value'];
            if (count($seen) === 1) {
                $a->proclaim('second');
            } elseif (count($seen) === 2) {
                $a->resign();
            }
            return count($seen) < 3;
        }, 10000, 5000);
        $this->assertSame(['first', 'second', null], $seen);

        // Bounded: without changes it returns after about $forMs.
        $start = hrtime(true);
        $a->observe(static function (?array $leader): bool {
            return true;
        }, 1000 + $c->marginMs(), 5000);
        $ms = self::ms($start);
        $this->assertGreaterThanOrEqual(400, $ms);
        $this->assertLessThan(1000 + $c->marginMs() + 1000, $ms);
    }
}
