// Package robust runs a three-node Paddock cluster as real `paddock agent`
// processes in Linux network namespaces and injects real faults into it:
// processes killed, restarted, paused and resumed, and packets dropped by
// iptables. The robustness workload and its tests drive a Cluster; the
// histories they record are judged by the subpackage check.
//
// # Network layout
//
// A cluster has an id "<pid>-<random>" (the pid of the test process that
// made it) and a private subnet 10.x.y.0/24 that no route or address of the
// host uses and no other live cluster on the machine has taken (the choice
// is made under a file lock shared by all test processes). It is wired as:
//
//	root namespace (the test process, clients)
//	  pdk<id>            veth, 10.x.y.254/24
//	     |
//	pdk-<id>-hub         namespace holding the bridge br0 and the other
//	  br0 -- host        veth ends ("host" is the peer of pdk<id>)
//	      -- n1, n2, n3
//	     |
//	pdk-<id>-n1..n3      one namespace per agent: lo, and eth0 with
//	                     10.x.y.1..3/24 (the peer of n1..n3 in the hub)
//
// Agent i listens on 10.x.y.(i+1): raft on port 7000, gRPC on 7001 and HTTP
// on 7002. Clients run in the test process, on the host side, and reach the
// agents through pdk<id>.
//
// The bridge lives in a namespace of its own rather than in the root
// namespace because hosts running Docker load br_netfilter and set the root
// FORWARD policy to DROP: frames bridged in the root namespace between two
// agents would pass through that chain and be dropped. The hub namespace
// has an empty firewall, so only the faults below ever drop a packet, and
// the harness never touches the host's own iptables rules.
//
// # Faults
//
// Process faults act on the agent's PID: Kill sends SIGKILL and waits for
// the exit, Restart starts the agent again on the same data dir and
// addresses, Pause and Resume send SIGSTOP and SIGCONT.
//
// Network faults are iptables DROP rules in the filter table of the node
// namespaces, so they are real packet losses seen by TCP:
//
//   - Isolate(i): node i's namespace drops INPUT from and OUTPUT to the two
//     other nodes; the host side still reaches it.
//   - CutOneWay(from, to): node to's namespace drops INPUT from node from;
//     packets from to to from still flow. TCP needs both directions, so in
//     practice no connection from either side can be opened or used, but
//     the packets the other way do arrive.
//   - DropResponses(i): node i's namespace drops OUTPUT to the host address
//     10.x.y.254. Requests sent on a connection that was open before still
//     arrive and are served, but neither the answer nor any TCP ack reaches
//     the client, whose call ends with its deadline: the outcome of a write
//     is unknown to it. New connections to node i cannot be opened (the
//     SYN-ACK is dropped too).
//   - Heal: flushes the filter table of every node namespace.
//
// Dropped counts the packets a node's fault rules have dropped, so a run
// can show that a fault took effect.
//
// # Cleanup guarantees
//
//   - Close kills every agent the Cluster started (SIGKILL, by PID; the PID
//     is the agent's own because `ip netns exec` execs it, which Start
//     checks), deletes pdk<id> and the namespaces (with them the bridge and
//     every veth) and the marker file. It is idempotent and safe to call in
//     any state, also after a failed test; Start calls it itself when it
//     fails half-way.
//   - Agents run in their own process group, so a Ctrl-C sent to the test's
//     terminal does not reach them, and with a parent-death signal
//     (SIGKILL), so they die with the test process even when no cleanup
//     runs (a -timeout panic, a SIGKILL of the test). The kernel ties that
//     signal to the OS thread that forked the child, so every agent is
//     forked from one goroutine locked to its own thread for the life of the
//     process: no other goroutine can run on that thread and end it.
//   - Start first removes what dead test processes left behind: each
//     cluster writes a marker file under /run/paddock-robust before it
//     creates anything and removes it last. A cluster whose marker names a
//     process (pid and start time, in this PID namespace) that no longer
//     exists is torn down: its pdk<id> link, its pdk-<id>-* namespaces and
//     its marker. Namespaces and links with the prefix but no marker are
//     torn down when the pid in their name is not alive. Processes are
//     never killed by this sweep: the parent-death signal has already
//     ended the agents of a dead test process.
//
// # Runs
//
// Run (run.go) is one seeded run: it starts a cluster (snapshots every 256
// entries, keeping 128, so runs snapshot while they write), and runs, at
// once:
//
//   - three clients doing creates, linearizable gets, sets and deletes
//     with and without an expected version on four register znodes
//     (/reg/k0..k3), each value unique;
//   - one client creating sequential znodes under /seq;
//   - sessions (2 s timeout) with one or two ephemerals each under /eph,
//     some kept alive until the end, some abandoned (keepalives stop, as
//     if the client were killed) and some closed;
//   - TTL znodes (1 or 1.5 s) under /ttl, some left idle, some set every
//     half TTL a few times, some given a child for a while; container
//     znodes under /ctr, given one or two children that are deleted
//     later, or none (those must stay);
//   - one watcher per node, each watching "/" recursively from zxid 1,
//     resuming on another node when its stream breaks, and starting a new
//     stream when the node answers COMPACTED;
//   - a farm (farm.go) at /farm: three joiners at a time (farm.Join, each
//     with its own client, 2 s sessions and local JSON file, which it
//     changes every 300-700 ms), one staying for the whole run and two
//     coming and going (killed, as kill -9 would, or stopped cleanly, then
//     joining again under the same name or a new one); a client setting
//     the running hosts' fields remotely (farm.SetField); and an exporter
//     (farm.Export to a JSON file) whose every write is recorded;
//   - in the runs electionRun picks by seed, an election (election.go):
//     three contenders (each with its own client and 2 s sessions, no
//     lock-delay) campaign on one election through the Go client
//     (Campaign with timeout_ms 1000, again and again) and, while they
//     believe they lead, create sequential znodes under /elect fenced
//     with their token (named CONTENDER-tTOKEN-SEQ); after a tenure of
//     0.8-2.5 s a leader resigns, is killed (its client closed, its
//     session left to expire; two per run at most: half of them
//     "paused", they make one more fenced write with the old token
//     2.5-4 s later, as a stopped process resumed would) or goes on; a
//     contender whose fence is lost campaigns again, one whose session
//     expired opens another; an observer reads the leader every
//     100-300 ms;
//   - in the runs webSessionRun picks (those without the election), web
//     sessions (websession.go): three sessions made with
//     CreateWebSession, and four workers making page views on them
//     through the WebSessionService, each a read with the lock (4 s
//     lease, 2 s wait) on a node drawn at random and a write of the
//     decimal counter read plus one with the version and token read
//     (write-through for two workers, delayed for the other two:
//     answered once the leader and its backups hold it, committed 100
//     ms later at the earliest, --web-session-flush-delay, so that a
//     fault often falls in between; the rules are the same),
//     sent again with the same request id to the next node while its
//     outcome is unknown (for 5 s at most); a read goes to the next
//     node, with its own request id, while one cannot serve it (down,
//     no leader) or does not answer in 2.5 s (5 s at most), and gets
//     back the lock an attempt whose answer was lost was granted. The
//     page views go on after the others' calls, until the run reads the
//     sessions (below): a new leader grants no lock for its grace
//     period (election timeout + 2 s), the first leader included, and
//     the faults of a short run would leave them little time.
//
// Meanwhile it injects its faults (inject.go), one after another: the
// leader or a follower killed with SIGKILL and restarted, the leader
// paused for 1-10 s, the leader or a follower isolated, a one-way cut
// between the leader and a follower, a follower cut off until the leader
// has compacted its log past it (it then needs a snapshot), and a node's
// answers to clients dropped for longer than a call's timeout (the calls
// it serves commit, their callers never learn it). A call that times out
// or fails over too long is recorded with an unknown outcome.
//
// When the faults are over and the workloads have made their calls (the
// election's contenders once one has led again after the last fault or
// kill, the election's bound at most; they then close their sessions), Run
// heals the network, waits for the abandoned and closed sessions'
// ephemerals, the TTL znodes and the emptied containers to go, waits for
// the exporter's file and the kept joiners' local files to agree with
// the farm (20 s at most), waits until the election's line has gone (10 s
// at most), reads every web session without the lock, reads every
// register once more (recorded, so
// a lost acknowledged write fails the check), lists the tree until two
// listings agree, waits for every watcher to catch up with it, and asks
// every node for a digest of its state. The checkers of package check
// then judge the histories: linearizability of the registers
// (porcupine), the sequential suffixes, the ephemerals' lifetimes, the
// TTL and container znodes' lifetimes, the watch streams, the farm's
// exports, the election's fenced writes and leaders (the election's
// candidates and the fenced znodes are in the final listing: it lists
// /paddock's children too), the web sessions' chains of increments,
// and the equal state digests. The seed fixes the faults, their
// timing and every client's choices; the interleaving of concurrent
// calls is not fixed, so a seed replays the same faults and workload,
// not the same history.
//
// Everything here needs root, `ip` (iproute2) and `iptables`; Available
// reports whether the machine has them, and tests skip with its error when
// it does not.
package robust
