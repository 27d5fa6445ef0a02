// Package zktest runs real Apache ZooKeeper servers (Debian's zookeeper 3.8
// package, launched with java) for tests, the demo and benchmarks.
//
// It is a normal (non-test) package so that every other package's tests, and
// commands such as `zkgate demo`, can import it.
//
// # Entry points
//
//   - [Start] and [StartEnsemble] are for tests: they take a [testing.TB],
//     put everything under t.TempDir(), register cleanup with t.Cleanup and,
//     when the test failed, log the tail of every server's log.
//   - [New] is the plain entry point for commands: the caller owns the
//     returned [Cluster] and must call [Cluster.Close].
//   - [RequireZooKeeper] skips a test when java or the ZooKeeper jar is
//     missing, except under CI=true or ZKGATE_REQUIRE_ZK=1, where it fails the
//     test instead (CI must never skip silently).
//   - [Partitioner] is a zk.Dialer wrapper that simulates network partitions
//     between one client and the ensemble.
//   - [Connect], [Session] and [Writer] are the tests' own clients, closed
//     when the test ends: a plain go-zookeeper connection, a connected
//     zksession.Session (an observer beside the code under test), and a
//     writer that plays the services or an operator, retrying while the
//     servers are briefly unreachable.
//
// Server indices are 0-based everywhere in this API; the ZooKeeper server id
// (myid) of server i is i+1 and its files live in <dir>/zk<i+1>.
//
// # Servers never outlive the Go process
//
// On Linux every java process is started with
// SysProcAttr{Setpgid: true, Pdeathsig: SIGKILL}. The kernel delivers the
// parent-death signal when the *thread* that forked the child exits, not when
// the process exits. Go threads come and go (and the runtime may retire the
// thread a goroutine happened to run on), so each Cluster owns one
// [procgroup.Spawner]: a goroutine that calls runtime.LockOSThread and never
// unlocks it. Every server of that cluster is forked from that one thread. The thread lives
// until [Cluster.Close] (which kills the servers first) or until the Go
// process dies, at which point the kernel SIGKILLs any server still running.
// Setpgid keeps a terminal's Ctrl-C from reaching the servers directly, so the
// harness stays in charge of their shutdown.
//
// # Environment
//
//   - ZKGATE_JAVA: the java binary (default: "java" from PATH).
//   - ZKGATE_ZK_CLASSPATH: the server classpath (default: [DefaultClasspath]).
//   - CI=true or ZKGATE_REQUIRE_ZK=1: [RequireZooKeeper] fails instead of
//     skipping.
package zktest
