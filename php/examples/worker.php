<?php

// worker.php: leader election done right. Run it in three terminals:
//
//     php php/examples/worker.php --name w1
//     php php/examples/worker.php --name w2
//     php php/examples/worker.php --name w3
//
// One leads and works; the others wait in line (a campaign is a long poll
// that renews their session while it waits). Each work step is a fenced
// write: a log line created under --log with the leader's token, which
// Paddock applies only while that token still leads. kill -9 the leader:
// another leads within the session timeout (+ about a second). Pause it
// instead (kill -STOP, wait past the session timeout, kill -CONT): its
// next write is refused ("fence lost") and it steps down, so the old
// leader never overwrites its successor's work.
//
// Options (each also from the environment):
//   --endpoints H:P,...      PADDOCK_HTTP_ENDPOINTS (default 127.0.0.1:2282)
//   --election NAME          PADDOCK_ELECTION (default worker-demo)
//   --session-timeout-ms MS  PADDOCK_SESSION_TIMEOUT_MS (default 10000)
//   --iterations N           PADDOCK_ITERATIONS: work steps, then resign
//                            and exit (default 0: forever)
//   --step-ms MS             PADDOCK_STEP_MS: time between steps (500)
//   --campaign-ms MS         PADDOCK_CAMPAIGN_MS: one campaign's wait (10000)
//   --log PATH               PADDOCK_LOG: the log's znode (/worker-demo)
//   --name NAME              PADDOCK_WORKER_NAME (default host-pid)

declare(strict_types=1);

require __DIR__ . '/../autoload.php';

use Paddock\Client;
use Paddock\Election;
use Paddock\Exception\AlreadyExistsException;
use Paddock\Exception\FenceLostException;
use Paddock\Exception\SessionExpiredException;
use Paddock\Exception\TimeoutException;
use Paddock\Exception\UnavailableException;
use Paddock\Lease;

$opts = getopt('', ['endpoints:', 'election:', 'session-timeout-ms:', 'iterations:', 'step-ms:',
    'campaign-ms:', 'log:', 'name:', 'help']);
if (isset($opts['help'])) {
    fwrite(STDOUT, "usage: php worker.php [--endpoints H:P,...] [--election NAME] [--session-timeout-ms MS]\n" .
        "       [--iterations N] [--step-ms MS] [--campaign-ms MS] [--log PATH] [--name NAME]\n");
    exit(0);
}
$opt = static function (string $name, string $env, string $default) use ($opts): string {
    if (isset($opts[$name])) {
        return (string) $opts[$name];
    }
    $v = getenv($env);
    return ($v === false || $v === '') ? $default : $v;
};
$endpoints = $opt('endpoints', 'PADDOCK_HTTP_ENDPOINTS', Client::DEFAULT_ENDPOINT);
$electionName = $opt('election', 'PADDOCK_ELECTION', 'worker-demo');
$sessionMs = (int) $opt('session-timeout-ms', 'PADDOCK_SESSION_TIMEOUT_MS', '10000');
$iterations = (int) $opt('iterations', 'PADDOCK_ITERATIONS', '0');
$stepMs = max(1, (int) $opt('step-ms', 'PADDOCK_STEP_MS', '500'));
$campaignMs = max(1, (int) $opt('campaign-ms', 'PADDOCK_CAMPAIGN_MS', '10000'));
$log = rtrim($opt('log', 'PADDOCK_LOG', '/worker-demo'), '/');
$me = $opt('name', 'PADDOCK_WORKER_NAME', gethostname() . '-' . getmypid());

// say prints one line at once (the e2e test reads them as they come).
$say = static function (string $line) use ($me): void {
    fwrite(STDOUT, date('H:i:s') . substr(sprintf('%.3f', fmod(microtime(true), 1)), 1) . " worker $me: $line\n");
    fflush(STDOUT);
};

$client = new Client($endpoints);
// The log's parent: any worker may make it; it is not leader's work.
for (;;) {
    try {
        $client->create($log);
        break;
    } catch (AlreadyExistsException $e) {
        break;
    } catch (UnavailableException | TimeoutException $e) {
        $say('cluster unavailable, retrying: ' . $e->getMessage());
    }
}

$lease = null;
$election = null;
$steps = 0;
while ($iterations === 0 || $steps < $iterations) {
    try {
        if ($lease === null) {
            $lease = Lease::open($client, $sessionMs);
            $election = new Election($client, $electionName, $lease);
            $say("session {$lease->id()} ({$lease->timeoutMs()} ms), campaigning in election $electionName");
        }
        if (!$election->isLeader()) {
            // A long poll: it returns when elected, or after $campaignMs
            // still in line (the node renewed the session meanwhile). The
            // first one waits at most a second, to say where it is.
            $position = $election->position();
            if (!$election->campaign($me, $position === null ? min(1000, $campaignMs) : $campaignMs)) {
                if ($election->position() !== $position) {
                    $say("waiting in line, {$election->position()} ahead (token {$election->token()})");
                }
                continue;
            }
            $say("leader with token {$election->token()}");
            $next = hrtime(true);
        }
        // Work: one fenced write per step; keepalives in between.
        if (hrtime(true) >= $next) {
            $steps++;
            $path = $client->create("$log/step-", "$me {$election->token()} $steps",
                ['sequential' => true, 'fence' => $election->fence()]);
            $say("step $steps with token {$election->token()}: $path");
            $next = hrtime(true) + $stepMs * 1000000;
        }
        $lease->keepAliveIfDue();
        usleep(max(0, min(50000, intdiv($next - hrtime(true), 1000))));
    } catch (FenceLostException $e) {
        // A pause or a partition longer than the session: someone else
        // leads now, and Paddock refused this write.
        $say('fenced write refused: fence lost, stepping down');
        $election->lost();
    } catch (SessionExpiredException $e) {
        $say('session expired, stepping down; opening a new session');
        $lease = null;
    } catch (UnavailableException | TimeoutException $e) {
        // The cluster is electing a leader, or this host lost it: keep
        // trying; a write that was refused changed nothing, and one that
        // happened is fenced.
        $say('cluster unavailable, retrying: ' . $e->getMessage());
        usleep(100000);
    }
}
$say("done after $steps steps, resigning");
$election->resign();
$lease->close();
