// Package demo is `zkgate demo`: on one machine it starts ZooKeeper (or
// uses one given), and for each mode a controller, a gateway (or nginx),
// four sample backends (real processes of the zkgate binary) and a steady,
// fixed load of mixed GET and POST requests; then it restarts the four
// backends one by one the way that mode would, and reports what the
// clients saw, side by side.
//
// The modes:
//
//   - poll: the gateway ignores watches and re-reads the registry
//     periodically (seed idea 1);
//   - watch: watches and periodic resync, no drain (what a typical
//     ZooKeeper-fed gateway does);
//   - sleep: drain without waiting, then a fixed sleep before the restart
//     (the seed's "Case one" as written);
//   - spring: instance_status OUT_OF_SERVICE in the registration (what
//     Spring's /actuator/serviceregistry does), the same sleep, restart;
//   - zkgate: confirmed drain, restart, registration, the gateway routing
//     to the new process, warm-up (package rollout when the backend comes
//     back on the same address);
//   - nginx: nginx with a static upstream of the four backends and its
//     default passive retries (proxy_next_upstream error timeout).
//
// Every restart is a real process death and a new process. The backends
// (Options.Backend) behave by default like Spring Boot services on
// Kubernetes: seconds to start before registering, a graceful shutdown on
// SIGTERM (the modes that drain or sleep first) or SIGKILL (the modes that
// just kill: poll, watch, nginx), and back on a new port (README.md, What
// the demo shows). The fast backends stop at once on SIGTERM and come back
// on the same address. Each mode has its own gateway and controller and its
// own registry and zkgate roots (under /zkgate-demo/<run id>/<mode>), so
// modes do not interfere and a shared ZooKeeper is not disturbed.
//
// Every process listens on loopback only. Child processes run in their own
// process groups and, on Linux, get SIGKILL when the demo dies; they are
// stopped when the run ends, fails or is interrupted.
package demo
