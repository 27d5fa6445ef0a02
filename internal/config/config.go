// Package config loads and validates the zkgate YAML file. One file serves
// every role (gateway, controller, register, rollout, demo); each role reads
// the sections it needs and validates only those.
//
// The keys documented in the README (its Configuration section) are a
// contract: add keys, never rename or remove them without a migration note
// in the README.
package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole zkgate configuration file.
type Config struct {
	ZooKeeper  ZooKeeper  `yaml:"zookeeper"`
	Registry   Registry   `yaml:"registry"`
	Gateway    Gateway    `yaml:"gateway"`
	Controller Controller `yaml:"controller"`
}

// ZooKeeper is how to reach the ensemble and where zkgate keeps its own state.
type ZooKeeper struct {
	Servers        []string      `yaml:"servers"`
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// Root is the znode under which zkgate keeps marks, presence, leader
	// election and the audit trail.
	Root string `yaml:"root"`
	// Auth, when set, adds digest credentials to the session and makes
	// zkgate create its own nodes with an ACL that only these credentials
	// may modify (everyone may read).
	Auth *Auth `yaml:"auth"`
	TLS  *TLS  `yaml:"tls"`
}

// Auth is a ZooKeeper digest credential.
type Auth struct {
	Scheme   string `yaml:"scheme"` // only "digest" is supported
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// TLS configures TLS to ZooKeeper's secureClientPort.
type TLS struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// Registry is where and how services register themselves.
type Registry struct {
	// Format is "curator" (Spring Cloud Zookeeper / Curator ServiceInstance
	// JSON) or "hostport" (node name is host:port, data ignored).
	Format string `yaml:"format"`
	Root   string `yaml:"root"`
	// ResyncInterval is how often the whole registry is re-read even when no
	// watch fired: the safety net for lost events.
	ResyncInterval time.Duration `yaml:"resync_interval"`
	// Watch, when false, ignores watches entirely and relies on the periodic
	// resync alone (the "poll" baseline of the demo). Default true.
	Watch *bool `yaml:"watch"`
}

// Gateway is the data plane.
type Gateway struct {
	// ID names this gateway in its presence node; it must be unique.
	// Default: hostname-<the address gateway.listen is bound to>.
	ID          string `yaml:"id"`
	Listen      string `yaml:"listen"`
	AdminListen string `yaml:"admin_listen"`
	// AdminAdvertise is the host:port controllers ask for the admin
	// endpoints (crash probes, traffic) when admin_listen is bound to
	// every interface. It must reach this gateway alone, never a load
	// balancer in front of several (controllers verify that this gateway
	// answers there before they trust it). Default: the admin port on the
	// address the gateway's ZooKeeper connection leaves from.
	AdminAdvertise string  `yaml:"admin_advertise"`
	Routes         []Route `yaml:"routes"`
	// Balancer is "least_requests" (power of two choices, default) or
	// "round_robin".
	Balancer string `yaml:"balancer"`
	// Retries bounds how many other instances are tried when the connection
	// to an instance fails before the request was sent. Default 2.
	Retries *int `yaml:"retries"`
	// DialTimeout bounds connecting to an instance. Default 2s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// DNSRefresh is how long the event loops dial the address a lookup
	// found for an instance registered by host name before they look the
	// name up again (in the background; the old address serves
	// meanwhile). Default 30s.
	DNSRefresh time.Duration `yaml:"dns_refresh"`
	// StaleAfter: /readyz fails when ZooKeeper has been unreachable and the
	// routing state is older than this. Default 60s.
	StaleAfter time.Duration `yaml:"stale_after"`
	// UnreadyWhenDetached makes /readyz fail as soon as the gateway may
	// have lost its ZooKeeper session (its presence node may be gone, so
	// drains no longer wait for it), instead of only once its state is
	// older than StaleAfter. Default false: static stability; the
	// controller keeps drains unconfirmed for controller.departed_window
	// after a gateway vanishes.
	UnreadyWhenDetached bool `yaml:"unready_when_detached"`
	// FailOpen routes to marked instances when every instance of a service
	// is marked, rather than answering 503. Default true.
	FailOpen *bool `yaml:"fail_open"`
	// Warmup ramps a returning instance's weight linearly over this period.
	// Default 0 (off).
	Warmup time.Duration `yaml:"warmup"`
	// ShutdownTimeout bounds graceful shutdown on SIGTERM. Default 30s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// MaxIdleConnsPerHost for upstream keep-alive connections. Default 256.
	MaxIdleConnsPerHost int `yaml:"max_idle_conns_per_host"`

	// Client-side limits of the proxy listener (each like nginx's
	// directive of the same idea). A connection that passes one is closed;
	// a request whose head or body is too slow is answered 408 when
	// nothing of its answer was sent yet.
	//
	// ClientIdleTimeout bounds how long a keep-alive connection waits for
	// its next request. Default 60s (nginx keepalive_timeout: 75s).
	ClientIdleTimeout time.Duration `yaml:"client_idle_timeout"`
	// ClientHeaderTimeout bounds reading a request head once its first
	// byte arrived. Default 10s (nginx client_header_timeout: 60s).
	ClientHeaderTimeout time.Duration `yaml:"client_header_timeout"`
	// ClientBodyTimeout bounds each read of a request body: the time
	// between two successive reads, not the whole transfer. Default 30s
	// (nginx client_body_timeout: 60s).
	ClientBodyTimeout time.Duration `yaml:"client_body_timeout"`
	// ClientSendTimeout bounds each write of a response to the client: a
	// client that reads nothing for this long is cut. Default 30s (nginx
	// send_timeout: 60s).
	ClientSendTimeout time.Duration `yaml:"client_send_timeout"`
	// MaxHeaderBytes bounds a request head (request line and headers);
	// larger ones get 431. Default 64 KiB; at most 1 MiB.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// Engine is how the proxy serves connections: "epoll" (default) serves
	// the common exchange — small requests, responses of known length
	// that fit a 16 KiB buffer — on one event loop per CPU, like nginx's
	// workers, and hands everything else to a goroutine; "goroutine"
	// serves every connection with a goroutine of its own. Both behave
	// the same; epoll costs less CPU per request (docs/benchmarks.md).
	Engine string `yaml:"engine"`
	// DrainCutoff bounds how long requests already in flight to a drained
	// instance may go on once its mark reached the gateway: after it,
	// their connections are cut (counted in zkgate_drain_cuts_total), so a
	// slow client cannot hold a drain unconfirmed. Default 60s, raised to
	// the longest route timeout when a route allows longer; negative: never
	// cut.
	DrainCutoff time.Duration `yaml:"drain_cutoff"`
}

// Route maps a request to a service.
type Route struct {
	// Prefix is the path prefix to match, e.g. "/orders/". Longest prefix
	// wins; among equal prefixes a route with a Host wins.
	Prefix string `yaml:"prefix"`
	// Host, when set, must equal the request's host (without port).
	Host        string `yaml:"host"`
	Service     string `yaml:"service"`
	StripPrefix bool   `yaml:"strip_prefix"`
	// Timeout bounds the whole upstream exchange (0: none).
	Timeout time.Duration `yaml:"timeout"`
}

// Controller is the management API and background jobs.
type Controller struct {
	Listen string `yaml:"listen"`
	// Tokens are bearer tokens accepted for mutating calls.
	Tokens []string `yaml:"tokens"`
	// ReadTokens, when set, are required for GET calls too (Tokens are
	// accepted as well).
	ReadTokens []string `yaml:"read_tokens"`
	// MarkTTL is the default lifetime of a mark. Default 10m.
	MarkTTL time.Duration `yaml:"mark_ttl"`
	// AbsentGrace: a mark whose address has been absent from the registry
	// longer than this is removed. Default 30m.
	AbsentGrace time.Duration `yaml:"absent_grace"`
	// ReconcileInterval: how often the leader re-reads everything and
	// repairs what events missed. Default 10s.
	ReconcileInterval time.Duration `yaml:"reconcile_interval"`
	// DepartedWindow: a gateway whose presence node disappeared without a
	// graceful shutdown (its session expired, e.g. it is partitioned from
	// ZooKeeper) may keep routing by its last state; for this long after
	// the controller saw the node go, drains are not confirmed without it.
	// Keep it at least the gateways' gateway.stale_after. Default 60s.
	DepartedWindow time.Duration `yaml:"departed_window"`
	// ProbeDeparted: the controller asks such a gateway's admin address
	// who serves it; when nothing listens there (connection refused) or
	// another process answers, the gateway's process is gone and drains
	// stop waiting for it before DepartedWindow ends. Default true; turn
	// it off where a firewall between controller and gateways rejects
	// connections (a rejected connection looks like a stopped process).
	ProbeDeparted *bool `yaml:"probe_departed"`
	// AuditLimit bounds the number of audit entries kept. Default 1000.
	AuditLimit int `yaml:"audit_limit"`
}

// Defaults.
const (
	DefaultZKServer        = "127.0.0.1:2181"
	DefaultSessionTimeout  = 10 * time.Second
	DefaultZKRoot          = "/zkgate"
	DefaultRegistryRoot    = "/services"
	DefaultResyncInterval  = 30 * time.Second
	DefaultGatewayListen   = "127.0.0.1:8080"
	DefaultAdminListen     = "127.0.0.1:9080"
	DefaultControllerAddr  = "127.0.0.1:7070"
	DefaultRetries         = 2
	DefaultDialTimeout     = 2 * time.Second
	DefaultDNSRefresh      = 30 * time.Second
	DefaultStaleAfter      = 60 * time.Second
	DefaultShutdownTimeout = 30 * time.Second
	DefaultMaxIdlePerHost  = 256
	DefaultDrainCutoff     = 60 * time.Second

	DefaultClientIdleTimeout   = 60 * time.Second
	DefaultClientHeaderTimeout = 10 * time.Second
	DefaultClientBodyTimeout   = 30 * time.Second
	DefaultClientSendTimeout   = 30 * time.Second
	DefaultMaxHeaderBytes      = 64 << 10
	MaxMaxHeaderBytes          = 1 << 20
	DefaultMarkTTL             = 10 * time.Minute
	DefaultAbsentGrace         = 30 * time.Minute
	DefaultReconcile           = 10 * time.Second
	DefaultDepartedWindow      = 60 * time.Second
	DefaultAuditLimit          = 1000

	FormatCurator  = "curator"
	FormatHostPort = "hostport"

	BalancerLeastRequests = "least_requests"
	EngineEpoll           = "epoll"
	EngineGoroutine       = "goroutine"
	BalancerRoundRobin    = "round_robin"
)

// Load reads, defaults and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes YAML (unknown keys are an error), fills defaults and
// validates the sections every role shares. Role-specific checks are in
// ValidateGateway and ValidateController.
func Parse(data []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parsing YAML: %w", oneLineYAMLError{err})
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// oneLineYAMLError prints a YAML decoding error on one line (the README
// promises one readable line per error): the decoder's "unmarshal errors"
// list one problem per line, which become "; "-separated.
type oneLineYAMLError struct{ err error }

func (e oneLineYAMLError) Error() string {
	var te *yaml.TypeError
	if errors.As(e.err, &te) && len(te.Errors) > 0 {
		parts := make([]string, len(te.Errors))
		for i, s := range te.Errors {
			parts[i] = strings.TrimSpace(s)
		}
		return strings.Join(parts, "; ")
	}
	msg := strings.TrimPrefix(e.err.Error(), "yaml: ")
	return strings.Join(strings.Fields(msg), " ")
}

func (e oneLineYAMLError) Unwrap() error { return e.err }

// ApplyDefaults fills every unset key with its default.
func (c *Config) ApplyDefaults() {
	z := &c.ZooKeeper
	if len(z.Servers) == 0 {
		z.Servers = []string{DefaultZKServer}
	}
	setDefault(&z.SessionTimeout, DefaultSessionTimeout)
	setDefault(&z.Root, DefaultZKRoot)
	if z.Auth != nil {
		setDefault(&z.Auth.Scheme, "digest")
	}
	r := &c.Registry
	setDefault(&r.Format, FormatCurator)
	setDefault(&r.Root, DefaultRegistryRoot)
	setDefault(&r.ResyncInterval, DefaultResyncInterval)
	setDefault(&r.Watch, ptr(true))
	c.Gateway.ApplyDefaults()
	ct := &c.Controller
	setDefault(&ct.Listen, DefaultControllerAddr)
	setDefault(&ct.MarkTTL, DefaultMarkTTL)
	setDefault(&ct.AbsentGrace, DefaultAbsentGrace)
	setDefault(&ct.ReconcileInterval, DefaultReconcile)
	setDefault(&ct.ProbeDeparted, ptr(true))
	setDefault(&ct.DepartedWindow, DefaultDepartedWindow)
	setDefault(&ct.AuditLimit, DefaultAuditLimit)
}

// ApplyDefaults fills the unset keys of the gateway section. The gateway
// applies them to the section it is given, so they live here only.
func (g *Gateway) ApplyDefaults() {
	setDefault(&g.Listen, DefaultGatewayListen)
	setDefault(&g.AdminListen, DefaultAdminListen)
	setDefault(&g.Balancer, BalancerLeastRequests)
	setDefault(&g.Retries, ptr(DefaultRetries))
	setDefault(&g.DialTimeout, DefaultDialTimeout)
	setDefault(&g.DNSRefresh, DefaultDNSRefresh)
	setDefault(&g.StaleAfter, DefaultStaleAfter)
	setDefault(&g.FailOpen, ptr(true))
	setDefault(&g.ShutdownTimeout, DefaultShutdownTimeout)
	setDefault(&g.MaxIdleConnsPerHost, DefaultMaxIdlePerHost)
	setDefault(&g.ClientIdleTimeout, DefaultClientIdleTimeout)
	setDefault(&g.ClientHeaderTimeout, DefaultClientHeaderTimeout)
	setDefault(&g.ClientBodyTimeout, DefaultClientBodyTimeout)
	setDefault(&g.ClientSendTimeout, DefaultClientSendTimeout)
	setDefault(&g.MaxHeaderBytes, DefaultMaxHeaderBytes)
	if g.DrainCutoff == 0 {
		g.DrainCutoff = DefaultDrainCutoff
		for _, r := range g.Routes {
			g.DrainCutoff = max(g.DrainCutoff, r.Timeout)
		}
	}
}

// setDefault sets *v to def when *v is the zero value (the key is unset).
func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Validate checks the zookeeper and registry sections.
func (c *Config) Validate() error {
	z := c.ZooKeeper
	for _, s := range z.Servers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return fmt.Errorf("zookeeper.servers: %q is not host:port", s)
		}
	}
	if z.SessionTimeout < 0 {
		return errors.New("zookeeper.session_timeout must be positive")
	}
	if err := checkZNodePath("zookeeper.root", z.Root); err != nil {
		return err
	}
	if z.Auth != nil {
		if z.Auth.Scheme != "digest" {
			return fmt.Errorf("zookeeper.auth.scheme: %q is not supported (use digest)", z.Auth.Scheme)
		}
		if z.Auth.Username == "" || strings.Contains(z.Auth.Username, ":") {
			return errors.New("zookeeper.auth.username must be set and must not contain ':'")
		}
	}
	if z.TLS != nil && (z.TLS.CertFile == "") != (z.TLS.KeyFile == "") {
		return errors.New("zookeeper.tls: cert_file and key_file go together")
	}
	r := c.Registry
	if r.Format != FormatCurator && r.Format != FormatHostPort {
		return fmt.Errorf("registry.format: %q is not curator or hostport", r.Format)
	}
	if err := checkZNodePath("registry.root", r.Root); err != nil {
		return err
	}
	if r.ResyncInterval < 0 {
		return errors.New("registry.resync_interval must be positive")
	}
	return nil
}

// ValidateGateway checks the gateway section.
func (c *Config) ValidateGateway() error {
	g := c.Gateway
	if err := checkListen("gateway.listen", g.Listen); err != nil {
		return err
	}
	if err := checkListen("gateway.admin_listen", g.AdminListen); err != nil {
		return err
	}
	if g.AdminAdvertise != "" {
		host, port, err := net.SplitHostPort(g.AdminAdvertise)
		ip := net.ParseIP(host)
		n, perr := strconv.Atoi(port)
		if err != nil || host == "" || ip != nil && ip.IsUnspecified() || perr != nil || n < 1 || n > 65535 {
			return fmt.Errorf("gateway.admin_advertise: %q is not host:port naming one host and port", g.AdminAdvertise)
		}
	}
	return g.Validate()
}

// Validate checks the gateway section but its listen addresses (the
// gateway itself checks only what the section cannot: routes that
// collide once their hosts are normalized).
func (g Gateway) Validate() error {
	if len(g.Routes) == 0 {
		return errors.New("gateway.routes: at least one route is required")
	}
	seen := map[string]bool{}
	for i, rt := range g.Routes {
		where := fmt.Sprintf("gateway.routes[%d]", i)
		if !strings.HasPrefix(rt.Prefix, "/") {
			return fmt.Errorf("%s.prefix: %q must start with /", where, rt.Prefix)
		}
		if rt.Service == "" || strings.Contains(rt.Service, "/") {
			return fmt.Errorf("%s.service: must be a service name without /", where)
		}
		if rt.Timeout < 0 {
			return fmt.Errorf("%s.timeout must be positive", where)
		}
		key := rt.Host + " " + rt.Prefix
		if seen[key] {
			return fmt.Errorf("%s: duplicate route for host %q prefix %q", where, rt.Host, rt.Prefix)
		}
		seen[key] = true
	}
	if g.Engine != "" && g.Engine != EngineEpoll && g.Engine != EngineGoroutine {
		return fmt.Errorf("gateway.engine: %q is not epoll or goroutine", g.Engine)
	}
	if g.Balancer != BalancerLeastRequests && g.Balancer != BalancerRoundRobin {
		return fmt.Errorf("gateway.balancer: %q is not least_requests or round_robin", g.Balancer)
	}
	if *g.Retries < 0 || *g.Retries > 10 {
		return errors.New("gateway.retries must be between 0 and 10")
	}
	if g.DialTimeout < 0 || g.DNSRefresh < 0 || g.StaleAfter < 0 || g.Warmup < 0 || g.ShutdownTimeout < 0 ||
		g.ClientIdleTimeout < 0 || g.ClientHeaderTimeout < 0 || g.ClientBodyTimeout < 0 || g.ClientSendTimeout < 0 {
		return errors.New("gateway: durations must be positive")
	}
	if g.MaxHeaderBytes < 0 || g.MaxHeaderBytes > MaxMaxHeaderBytes {
		return fmt.Errorf("gateway.max_header_bytes must be between 1 and %d", MaxMaxHeaderBytes)
	}
	return nil
}

// ValidateController checks the controller section.
func (c *Config) ValidateController() error {
	ct := c.Controller
	if err := checkListen("controller.listen", ct.Listen); err != nil {
		return err
	}
	if len(ct.Tokens) == 0 {
		return errors.New("controller.tokens: at least one token is required for mutating calls")
	}
	for _, t := range append(append([]string{}, ct.Tokens...), ct.ReadTokens...) {
		if strings.TrimSpace(t) == "" {
			return errors.New("controller: empty token")
		}
	}
	if ct.MarkTTL < 0 || ct.AbsentGrace < 0 || ct.ReconcileInterval < 0 {
		return errors.New("controller: durations must be positive")
	}
	if ct.DepartedWindow < 0 {
		return errors.New("controller.departed_window must be positive")
	}
	if ct.AuditLimit < 0 {
		return errors.New("controller.audit_limit must be positive")
	}
	return nil
}

func checkListen(key, addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%s: %q is not host:port", key, addr)
	}
	return nil
}

func checkZNodePath(key, p string) error {
	if !strings.HasPrefix(p, "/") || (len(p) > 1 && strings.HasSuffix(p, "/")) || strings.Contains(p, "//") {
		return fmt.Errorf("%s: %q is not an absolute znode path", key, p)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// ClientConfig builds the TLS client configuration.
func (t *TLS) ClientConfig() (*tls.Config, error) {
	tc := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("zookeeper.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("zookeeper.tls.ca_file: no certificate in %s", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("zookeeper.tls: loading client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
