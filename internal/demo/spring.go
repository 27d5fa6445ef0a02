package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path"
	"time"

	"github.com/zkgate/zkgate/internal/zksession"
)

// statusOutOfService is the instance_status Spring's
// /actuator/serviceregistry endpoint writes to take an instance out.
const statusOutOfService = "OUT_OF_SERVICE"

// setStatus sets payload.metadata.instance_status in addr's registration
// node, as Spring's /actuator/serviceregistry endpoint does (Spring Cloud
// Zookeeper's ZookeeperServiceRegistry.setStatus: Curator's updateService,
// a setData on the ephemeral node). Gateways that follow the registry stop
// routing to an instance whose status is not UP (README.md, What the demo
// shows).
func (s *stack) setStatus(ctx context.Context, addr, status string) error {
	sess, err := s.session(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	dir := path.Join(s.regRoot, service)
	kids, _, err := sess.Children(ctx, dir)
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	for _, k := range kids {
		p := path.Join(dir, k)
		data, st, err := sess.Get(ctx, p)
		if errors.Is(err, zksession.ErrNoNode) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		out, ok, err := withStatus(data, addr, status)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if !ok {
			continue
		}
		if _, err := sess.Set(ctx, p, out, st.Version); err != nil {
			return fmt.Errorf("setting instance_status of %s: %w", p, err)
		}
		return nil
	}
	return fmt.Errorf("no registration of %s under %s", addr, dir)
}

// withStatus returns the Curator instance JSON data with instance_status
// set, and whether data registers addr. Other fields are kept as they are.
func withStatus(data []byte, addr, status string) ([]byte, bool, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var inst map[string]any
	if err := dec.Decode(&inst); err != nil {
		return nil, false, fmt.Errorf("not a Curator instance: %w", err)
	}
	host, _ := inst["address"].(string)
	port, _ := inst["port"].(json.Number)
	if net.JoinHostPort(host, port.String()) != addr {
		return nil, false, nil
	}
	payload, _ := inst["payload"].(map[string]any)
	if payload == nil {
		payload = map[string]any{}
		inst["payload"] = payload
	}
	md, _ := payload["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		payload["metadata"] = md
	}
	md["instance_status"] = status
	out, err := json.Marshal(inst)
	return out, true, err
}

// session returns the stack's own ZooKeeper session, connecting on first
// use.
func (s *stack) session(ctx context.Context) (*zksession.Session, error) {
	if s.obs == nil {
		sess, err := zksession.Connect(zksession.Config{Servers: s.r.servers, SessionTimeout: 10 * time.Second, Logger: s.r.log})
		if err != nil {
			return nil, fmt.Errorf("connecting to ZooKeeper: %w", err)
		}
		s.obs = sess
	}
	wctx, cancel := context.WithTimeout(ctx, s.r.timing.StepTimeout)
	defer cancel()
	if err := s.obs.WaitConnected(wctx); err != nil {
		return nil, fmt.Errorf("connecting to ZooKeeper: %w", err)
	}
	return s.obs, nil
}
