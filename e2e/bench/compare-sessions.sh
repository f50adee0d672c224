#!/usr/bin/env bash
# compare-sessions.sh puts a PHP site's sessions in Paddock, Redis and
# memcached in turn, side by side on this machine. The same page
# (session_start(); $_SESSION['n']++; echo n) is served by the same three
# `php -S 127.0.0.1:PORT` web servers (PHP_CLI_SERVER_WORKERS=8 each), with
# the sessions in:
#   - paddock:    a three-node `paddock agent` cluster on loopback, built from
#                 this repository; the handler is php/paddock-session.php
#                 (-d auto_prepend_file=...), PADDOCK_HTTP_ENDPOINTS listing a
#                 different node first on each web server;
#   - paddock-delayed: the same with PADDOCK_SESSION_MODE=delayed (a write
#                 answered once the leader and its backups hold it; the
#                 leader gathers 100 ms of them and commits them together,
#                 the agents' default --web-session-flush-delay);
#   - paddock-delayed-0ms: the same with --web-session-flush-delay 0 (each
#                 write committed right after its answer, the default
#                 before the backups);
#   - redis-lock: one redis-server, php-redis session.save_handler=redis,
#                 redis.session.locking_enabled=1 (the other lock settings
#                 as phpredis ships them);
#   - redis:      the same with locking off, as phpredis ships it;
#   - memcached:  one memcached, php-memcached session.save_handler=memcached,
#                 memcached.sess_locking=1.
# A Go load generator (`bench sessions`, e2e/bench/sessions*.go) measures,
# in one run: page views per second and p50/p99 at 16 and 128 concurrent
# users (one session each, its cookie kept); bursts of 16 and 64 concurrent
# requests on one session (increments lost, requests failed, time to
# finish); and a 16-user run during which the store is killed with SIGKILL
# (the Paddock leader, redis-server, memcached) and started again 2 s later
# (failed requests, sessions lost: a count that went back or vanished).
# It prints markdown tables and writes sessions.json (current directory).
# Every server listens on 127.0.0.1 only.
#
# It installs what is missing with apt-get (redis-server, php-redis,
# memcached, php-memcached, php-cli, php-curl) and stops the services those
# packages start, so that they do not share the CPU with the run.
#
# Usage (from anywhere): e2e/bench/compare-sessions.sh [bench sessions flags]
#   e2e/bench/compare-sessions.sh                          # full run: 10 s rows, ~2.5 minutes
#   e2e/bench/compare-sessions.sh --duration 5s --kill-duration 6s
#   e2e/bench/compare-sessions.sh --stores paddock,redis-lock --users 16
#   e2e/bench/compare-sessions.sh --stores paddock --agent-arg=--pprof   # profile: addresses in <dir>/paddock/http-addrs
# Flags: see `cd e2e/bench && go run . sessions --help`. Every process this
# script starts is stopped when it exits, however it exits, by its PID.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

need=()
command -v php >/dev/null 2>&1 || need+=(php-cli)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v memcached >/dev/null 2>&1 || need+=(memcached)
if command -v php >/dev/null 2>&1; then
	mods=$(php -m)
	grep -qx curl <<<"$mods" || need+=(php-curl)
	grep -qx redis <<<"$mods" || need+=(php-redis)
	grep -qx memcached <<<"$mods" || need+=(php-memcached)
else
	need+=(php-curl php-redis php-memcached)
fi
if [ ${#need[@]} -gt 0 ]; then
	echo "installing ${need[*]}" >&2
	$sudo apt-get update -q >&2
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${need[@]}" >&2
	# The packages may start system services on their standard ports; the
	# run uses its own servers on free loopback ports, so stop those.
	if command -v systemctl >/dev/null 2>&1; then
		for svc in redis-server memcached; do
			if systemctl is-active --quiet "$svc" 2>/dev/null; then
				echo "stopping the $svc service the package started" >&2
				$sudo systemctl stop "$svc" || true
				$sudo systemctl disable "$svc" >/dev/null 2>&1 || true
			fi
		done
	fi
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/paddock-compare-sessions.XXXXXX")
bench_pid=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
		# SIGTERM: the program stops the web servers and the store and
		# exits; its servers also die with it if it is killed
		# (parent-death signal).
		kill -TERM "$bench_pid" 2>/dev/null || true
		wait "$bench_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "building paddock and the comparison" >&2
(cd "$root" && go build -o "$tmp/paddock" ./cmd/paddock)
(cd "$here" && go build -o "$tmp/bench" .)

"$tmp/bench" sessions --paddock-bin "$tmp/paddock" --paddock-php "$root/php/paddock-session.php" \
	--dir "$tmp/data" "$@" &
bench_pid=$!
wait "$bench_pid"
