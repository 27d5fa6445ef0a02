// Package bench runs zkgate's benchmarks. They are commands
// (`zkgate bench …`), not timed tests: they start real processes, load
// them and report figures for the docs (docs/benchmarks.md), as a table
// and as JSON in bench-results/.
//
// The proxy benchmark ([RunProxy]) measures requests per second and
// latency percentiles of one backend reached three ways, with the same
// load tool (wrk) in one run:
//
//   - direct: wrk → backend
//   - gateway: wrk → `zkgate gateway` → backend, routed through a real
//     ZooKeeper registry (the backend is registered as a Curator node)
//   - nginx: wrk → nginx (Debian nginx-light) → backend, skipped with a
//     note when nginx is not installed
//
// under several scenarios (default GET, POST with a 4 KiB body, GET with
// a 64 KiB response, one connection: [AllScenarios]), each run on every
// target back to back in every round.
//
// The propagation benchmark ([RunPropagation]) measures how fast a drain
// reaches every gateway: a 3-node ZooKeeper ensemble, one controller and K
// gateways (in the bench's process, each with its own ZooKeeper session),
// M drain/undrain cycles through the controller API, timed per gateway
// with gatewayd.Options.OnApply.
//
// The registry benchmark ([RunRegistry]) measures a gateway (a separate
// process) over a large registry: cold start, memory, and single changes
// from the ZooKeeper write to the gateway's applied routing table.
//
// Every process (backend, gateway, nginx, wrk, ZooKeeper) runs on loopback
// in its own process group, started from one locked OS thread with a
// parent-death signal on Linux, and is stopped when the run ends, fails
// or is interrupted.
package bench
