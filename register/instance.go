package register

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Curator and Spring Cloud Zookeeper constants written into every node.
const (
	// PayloadClass is the Jackson type id Spring Cloud Zookeeper puts in
	// the payload, so that Spring clients can deserialize it.
	PayloadClass = "org.springframework.cloud.zookeeper.discovery.ZookeeperInstance"
	// StatusUp is the instance_status metadata of an instance in service.
	StatusUp = "UP"
	// MetadataStatus is the metadata key Spring uses for the status.
	MetadataStatus = "instance_status"
)

// curatorInstance is Curator's ServiceInstance as Spring Cloud Zookeeper
// writes it, fields in Curator's order
// (docs/architecture.md#curator-registration-format).
type curatorInstance struct {
	Name                string         `json:"name"`
	ID                  string         `json:"id"`
	Address             string         `json:"address"`
	Port                int            `json:"port"`
	SSLPort             *int           `json:"sslPort"`
	Payload             curatorPayload `json:"payload"`
	RegistrationTimeUTC int64          `json:"registrationTimeUTC"`
	ServiceType         string         `json:"serviceType"`
	URISpec             uriSpec        `json:"uriSpec"`
}

type curatorPayload struct {
	Class    string            `json:"@class"`
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Metadata map[string]string `json:"metadata"`
}

type uriSpec struct {
	Parts []uriPart `json:"parts"`
}

type uriPart struct {
	Value    string `json:"value"`
	Variable bool   `json:"variable"`
}

// defaultURISpec is Spring's "{scheme}://{address}:{port}".
func defaultURISpec() uriSpec {
	return uriSpec{Parts: []uriPart{
		{"scheme", true}, {"://", false}, {"address", true}, {":", false}, {"port", true},
	}}
}

// EncodeInstance returns the node content, in the format Spring Cloud
// Zookeeper writes, of service's instance id at host:port registered at
// registeredMs (ms since the epoch); payloadID is the payload's id (the
// Spring application name), and metadata gets instance_status UP unless
// it sets one (metadata itself is not modified). Tools that write
// registrations without a Registration (benchmarks) use it too.
func EncodeInstance(service, id, payloadID, host string, port int, metadata map[string]string, registeredMs int64) []byte {
	md := make(map[string]string, len(metadata)+1)
	for k, v := range metadata {
		md[k] = v
	}
	if md[MetadataStatus] == "" {
		md[MetadataStatus] = StatusUp
	}
	ci := curatorInstance{
		Name:    service,
		ID:      id,
		Address: host,
		Port:    port,
		Payload: curatorPayload{
			Class: PayloadClass, ID: payloadID, Name: service, Metadata: md,
		},
		RegistrationTimeUTC: registeredMs,
		ServiceType:         "DYNAMIC",
		URISpec:             defaultURISpec(),
	}
	b, err := json.Marshal(ci)
	if err != nil {
		// Only strings, integers and a map of strings: cannot fail.
		panic(fmt.Sprintf("register: encoding instance: %v", err))
	}
	return b
}

// nodeAddress returns the host:port a Curator node registers, or "" when
// the data is not a ServiceInstance.
func nodeAddress(data []byte) string {
	var ci struct {
		Address string `json:"address"`
		Port    int    `json:"port"`
	}
	if json.Unmarshal(data, &ci) != nil || ci.Address == "" || ci.Port <= 0 {
		return ""
	}
	return net.JoinHostPort(ci.Address, strconv.Itoa(ci.Port))
}

// splitAddress checks host:port and returns its parts and canonical form.
func splitAddress(addr string) (host string, port int, canonical string, err error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, "", fmt.Errorf("address %q is not host:port", addr)
	}
	port, err = strconv.Atoi(ps)
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, "", fmt.Errorf("address %q has no valid port", addr)
	}
	if host == "" || strings.ContainsAny(host, " /\\?#@\t\r\n") {
		return "", 0, "", fmt.Errorf("address %q has no valid host (an unspecified host cannot be registered)", addr)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return "", 0, "", fmt.Errorf("address %q: %s cannot be reached by others; register a routable address", addr, host)
	}
	return host, port, net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// NewUUID returns a random (version 4) UUID, as Curator makes for every
// instance.
func NewUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("making an instance id: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
