package zksession

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkgate/zkgate/internal/metric"
)

// RegisterMetrics exports the session state as zkgate_zookeeper_session_state
// (one series per state, 1 for the current one) and the number of sessions
// established as zkgate_zookeeper_sessions_total, and the watches it holds
// as zkgate_zookeeper_watches (see Watches).
func (s *Session) RegisterMetrics(reg prometheus.Registerer) error {
	for _, st := range []State{StateConnecting, StateConnected, StateSuspended, StateLost, StateClosed} {
		g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "zkgate_zookeeper_session_state",
			Help:        "ZooKeeper session state as zkgate tracks it (1 for the current state).",
			ConstLabels: prometheus.Labels{"state": st.String()},
		}, func() float64 {
			cur, _ := s.State()
			if cur == st {
				return 1
			}
			return 0
		})
		if err := reg.Register(g); err != nil {
			return err
		}
	}
	if err := reg.Register(metric.GaugeFunc("zkgate_zookeeper_watches",
		"Data and child watches this ZooKeeper session holds (armed, not fired yet).",
		func() float64 { return float64(s.Watches()) })); err != nil {
		return err
	}
	return reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "zkgate_zookeeper_sessions_total",
		Help: "ZooKeeper sessions established since start.",
	}, func() float64 { return float64(s.Generation()) }))
}
