<?php

declare(strict_types=1);

namespace Paddock\Tests;

use Paddock\Exception\FailedPreconditionException;
use Paddock\Exception\FenceLostException;
use Paddock\Lock;

final class LockTest extends ClusterTestCase
{
    public function testMutex(): void
    {
        $c = $this->client();
        $name = self::unique('reindex');
        $a = new Lock($c, $name, $this->lease($c));
        $b = new Lock($c, $name, $this->lease($c));

        $this->assertTrue($a->acquire(1000, 'host-a'));
        $this->assertTrue($a->isHeld());
        $this->assertSame(1, $a->limit());
        $this->assertStringStartsWith("/paddock/locks/$name/", $a->key());

        // TryAcquire of a busy lock leaves nothing behind.
        $this->assertFalse($b->tryAcquire('host-b'));
        $this->assertNull($b->token());
        $line = $a->holders();
        $this->assertSame([$a->token()], array_column($line['holders'], 'token'));
        $this->assertSame('host-a', $line['holders'][0]['value']);
        $this->assertSame([], $line['waiters']);

        // Acquire waits about as long as asked, then keeps its place.
        $start = hrtime(true);
        $this->assertFalse($b->acquire(500, 'host-b'));
        $this->assertLessThan(500 + $c->marginMs(), self::ms($start));
        $this->assertSame(1, $b->position());
        $this->assertSame([$b->token()], array_column($a->holders()['waiters'], 'token'));

        $file = '/' . self::unique('index');
        $c->create($file, 'a', ['fence' => $a->fence()]);
        $aFence = $a->fence();
        $a->release();
        $this->assertFalse($a->isHeld());
        $this->assertTrue($b->acquire(2000));
        try {
            $c->set($file, 'late', ['fence' => $aFence]);
            $this->fail('a write fenced with a released lock succeeded');
        } catch (FenceLostException $e) {
            $this->assertStringContainsString('fence lost', $e->getMessage());
        }
        $c->set($file, 'b', ['fence' => $b->fence()]);
        $this->assertSame('b', $c->get($file)['data']);
        $b->release();
        $this->assertSame([], $a->holders()['holders']);
    }

    public function testSemaphore(): void
    {
        $c = $this->client();
        $name = self::unique('deploy');
        $locks = [];
        foreach (range(1, 3) as $i) {
            $locks[] = new Lock($c, $name, $this->lease($c), 2);
        }
        $this->assertTrue($locks[0]->acquire(1000));
        $this->assertTrue($locks[1]->tryAcquire());
        $this->assertFalse($locks[2]->tryAcquire());
        $this->assertFalse($locks[2]->acquire(500));
        $this->assertSame(2, $locks[2]->position());
        $this->assertCount(2, $locks[0]->holders()['holders']);

        try {
            (new Lock($c, $name, $this->lease($c), 3))->tryAcquire();
            $this->fail('a different limit was accepted');
        } catch (FailedPreconditionException $e) {
            $this->assertStringContainsString('limit', $e->getMessage());
        }

        $locks[0]->release();
        $this->assertTrue($locks[2]->acquire(2000));
        $this->assertSame(2, $locks[2]->limit());
    }
}
