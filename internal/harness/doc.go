// Package harness is what zkgate's benchmarks (internal/bench) and the
// demo (internal/demo) share to set up a run: free loopback ports, child
// processes with their logs (procgroup: their own process group, killed
// with the run), the configuration files of the zkgate processes they
// start, nginx as the reference proxy, and the pieces of their reports
// (the machine, numbers with thousands separators, the JSON file).
//
// Each benchmark or demo mode is then its scenario and its report; the
// harness knows nothing of either.
package harness
