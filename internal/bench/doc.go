// Package bench runs zkgate's benchmarks. They are commands
// (`zkgate bench …`), not timed tests: they start real processes, load
// them with a real load tool and report figures for the docs.
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
// Every process (backend, gateway, nginx, wrk, ZooKeeper) runs on loopback
// in its own process group, started from one locked OS thread with a
// parent-death signal on Linux, and is stopped when the run ends, fails
// or is interrupted.
package bench
