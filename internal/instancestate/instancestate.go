// Package instancestate names the states of an instance as zkgate reports
// them: in a gateway's routing table and /admin/instances, in presence
// reports, in the controller's API and dashboard, and in rollout's
// progress. docs/architecture.md ("Instance states") tells the life
// cycle: warming → serving → draining → drained → gone → (registered
// again) warming; ejected and down are orthogonal.
//
// These are the only spellings of the state names in zkgate's code: the
// gateway uses them as they are; ctlclient and presence alias the ones
// their API documents under their own names.
package instancestate

// States of an instance at one gateway.
const (
	// Warming: in rotation, weight still ramping up after the address
	// (re)appeared or stopped being marked.
	Warming = "warming"
	// Serving: in rotation at full weight.
	Serving = "serving"
	// Draining: a mark applies and requests are still in flight.
	Draining = "draining"
	// Drained: a mark applies and nothing is in flight.
	Drained = "drained"
	// Down: the registry says the instance is not UP (instance_status
	// OUT_OF_SERVICE and the like).
	Down = "down"
	// Ejected: taken out for a while by passive outlier detection.
	Ejected = "ejected"
	// Gone: no longer in the registry, requests still in flight.
	Gone = "gone"
	// FailOpen: a mark applies, but the gateway still sends the instance
	// new requests because every instance of the service is marked.
	FailOpen = "fail_open"
	// Absent: marked (or asked about) but not registered.
	Absent = "absent"
	// Unrouted: the gateway has no route for the instance's service.
	Unrouted = "unrouted"
)
