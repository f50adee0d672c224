#!/usr/bin/env bash
# compare.sh runs Paddock, etcd and ZooKeeper side by side on this machine:
# it installs etcd-server, zookeeper and a JRE with apt-get when missing,
# builds paddock and this comparison program, runs every workload against a
# three-node loopback cluster of each system in turn, prints the markdown
# table and writes results.json (in the current directory).
#
# Usage (from anywhere): e2e/bench/compare.sh [bench flags]
#   e2e/bench/compare.sh                      # full run: 10s rows, 1/16/128 clients
#   e2e/bench/compare.sh --duration 3s --warmup 1s --keys 20000 --clients 1,16
#   e2e/bench/compare.sh --workloads lock,election,election-server-kill  # elections and locks only
# Flags: see `cd e2e/bench && go run . --help`. Every process this script
# starts is stopped when it exits, however it exits.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
[ -f /usr/share/java/zookeeper.jar ] || need+=(zookeeper)
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
if [ ${#need[@]} -gt 0 ]; then
	echo "installing ${need[*]}" >&2
	$sudo apt-get update -q >&2
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${need[@]}" >&2
	# The packages may start system services; they would share the CPU
	# with the benchmark (their ports do not clash: the clusters here use
	# free loopback ports). Stop the ones this install started.
	if command -v systemctl >/dev/null 2>&1; then
		for svc in etcd zookeeper; do
			if systemctl is-active --quiet "$svc" 2>/dev/null; then
				echo "stopping the $svc service the package started" >&2
				$sudo systemctl stop "$svc" || true
				$sudo systemctl disable "$svc" >/dev/null 2>&1 || true
			fi
		done
	fi
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/paddock-compare.XXXXXX")
bench_pid=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
		# SIGTERM: the program stops the running cluster and exits; its
		# servers also die with it if it is killed (parent-death signal).
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

"$tmp/bench" --paddock-bin "$tmp/paddock" --dir "$tmp/data" "$@" &
bench_pid=$!
wait "$bench_pid"
