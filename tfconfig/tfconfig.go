package tfconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
)

// EnvVar is the environment variable that holds the configuration.
const EnvVar = "TF_CONFIG"

// ErrInvalid reports a TF_CONFIG that cannot be used: malformed JSON, an
// unknown task type, an index out of range, or a bad address.
var ErrInvalid = errors.New("tfconfig: invalid TF_CONFIG")

// The task (job) types of a cluster, as the TFJob operator names them (it
// lower-cases the replica types of the TFJob spec).
const (
	TypeChief     = "chief"
	TypeMaster    = "master" // the older name of the chief
	TypeWorker    = "worker"
	TypePS        = "ps"
	TypeEvaluator = "evaluator" // not part of the training cluster
)

var knownTypes = []string{TypeChief, TypeMaster, TypeWorker, TypePS, TypeEvaluator}

// GRPCPortOffset is added to a task's TF_CONFIG port to get the port of its
// gRPC parameter service. See the package documentation for the port
// convention.
const GRPCPortOffset = 1

// wildcard is the bind host of Endpoints: memberlist's transport needs an
// IP, not an empty host.
const wildcard = "0.0.0.0"

// Task is this process's place in the cluster.
type Task struct {
	// Type is one of the Type* constants.
	Type string `json:"type"`
	// Index is the position of this task in Cluster[Type].
	Index int `json:"index"`
}

// Config is a parsed TF_CONFIG.
type Config struct {
	// Cluster maps task types to their addresses, HOST:PORT each.
	Cluster map[string][]string `json:"cluster"`
	// Task is this process's task.
	Task Task `json:"task"`
	// Environment is "cloud" under the TFJob operator; informative only.
	Environment string `json:"environment,omitempty"`
}

// Role is what a task runs as in flowps.
type Role string

// The roles.
const (
	// RolePS runs psd, a parameter server shard.
	RolePS Role = "ps"
	// RoleTrainer runs the trainer (chief, master and worker tasks).
	RoleTrainer Role = "trainer"
	// RoleEvaluator runs evaluation only; it takes no part in training.
	RoleEvaluator Role = "evaluator"
)

// FromEnv parses $TF_CONFIG. It returns nil and no error when the variable
// is unset or blank, so callers fall back to their flags.
func FromEnv() (*Config, error) {
	s, ok := os.LookupEnv(EnvVar)
	if !ok || strings.TrimSpace(s) == "" {
		return nil, nil
	}
	c, err := Parse([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("$%s: %w", EnvVar, err)
	}
	return c, nil
}

// Parse parses and validates a TF_CONFIG document. Task types are
// lower-cased. Errors wrap ErrInvalid.
func Parse(data []byte) (*Config, error) {
	var raw struct {
		Cluster       map[string]json.RawMessage `json:"cluster"`
		SparseCluster json.RawMessage            `json:"sparseCluster"`
		Task          *struct {
			Type  *string `json:"type"`
			Index *int    `json:"index"`
		} `json:"task"`
		Environment string `json:"environment"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, jsonError(data, err))
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrInvalid)
	}
	if raw.Cluster == nil && raw.SparseCluster != nil {
		return nil, fmt.Errorf("%w: sparseCluster (the operator's enableDynamicWorker) is not supported; give a full \"cluster\"", ErrInvalid)
	}
	if raw.Task == nil || raw.Task.Type == nil {
		return nil, fmt.Errorf("%w: task.type missing", ErrInvalid)
	}
	c := &Config{Cluster: map[string][]string{}, Environment: raw.Environment}
	c.Task.Type = strings.ToLower(strings.TrimSpace(*raw.Task.Type))
	if raw.Task.Index != nil {
		c.Task.Index = *raw.Task.Index
	}
	for typ, msg := range raw.Cluster {
		t := strings.ToLower(typ)
		if !slices.Contains(knownTypes, t) {
			return nil, fmt.Errorf("%w: cluster has unknown task type %q (known: %s)", ErrInvalid, typ, strings.Join(knownTypes, ", "))
		}
		var addrs []string
		if err := json.Unmarshal(msg, &addrs); err != nil {
			return nil, fmt.Errorf("%w: cluster.%s must be a list of \"HOST:PORT\" strings: %s", ErrInvalid, typ, jsonError(msg, err))
		}
		if _, dup := c.Cluster[t]; dup {
			return nil, fmt.Errorf("%w: cluster.%s given twice", ErrInvalid, t)
		}
		for i, a := range addrs {
			if _, _, err := splitAddr(a); err != nil {
				return nil, fmt.Errorf("%w: cluster.%s[%d] %q: %v", ErrInvalid, t, i, a, err)
			}
		}
		c.Cluster[t] = addrs
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func jsonError(data []byte, err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Sprintf("malformed JSON: ends after %d bytes", len(data))
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, err)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "value"
		}
		return fmt.Sprintf("%s is a JSON %s, want %v", field, te.Value, te.Type)
	}
	return err.Error()
}

func (c *Config) validate() error {
	t := c.Task
	if !slices.Contains(knownTypes, t.Type) {
		return fmt.Errorf("%w: unknown task.type %q (known: %s)", ErrInvalid, t.Type, strings.Join(knownTypes, ", "))
	}
	if t.Index < 0 {
		return fmt.Errorf("%w: task.index %d is negative", ErrInvalid, t.Index)
	}
	if len(c.Cluster[TypeChief])+len(c.Cluster[TypeMaster]) > 1 {
		return fmt.Errorf("%w: %d chief/master tasks, at most one allowed", ErrInvalid, len(c.Cluster[TypeChief])+len(c.Cluster[TypeMaster]))
	}
	if t.Type != TypeEvaluator {
		if n := len(c.Cluster[t.Type]); t.Index >= n {
			return fmt.Errorf("%w: task %s %d out of range: cluster.%s has %d entries", ErrInvalid, t.Type, t.Index, t.Type, n)
		}
	}
	seen := map[string]string{}
	for _, typ := range knownTypes {
		for i, a := range c.Cluster[typ] {
			id := fmt.Sprintf("%s[%d]", typ, i)
			if prev, dup := seen[a]; dup {
				return fmt.Errorf("%w: address %q is both %s and %s", ErrInvalid, a, prev, id)
			}
			seen[a] = id
		}
	}
	return nil
}

// splitAddr checks a HOST:PORT address and returns its parts. The port must
// leave room for the gRPC port at port+GRPCPortOffset.
func splitAddr(a string) (string, int, error) {
	host, ps, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0, err
	}
	if host == "" {
		return "", 0, errors.New("empty host")
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port+GRPCPortOffset > 65535 {
		return "", 0, fmt.Errorf("port %q must be a number in 1..%d", ps, 65535-GRPCPortOffset)
	}
	return host, port, nil
}

// Role returns what this task runs as.
func (c *Config) Role() Role {
	switch c.Task.Type {
	case TypePS:
		return RolePS
	case TypeEvaluator:
		return RoleEvaluator
	}
	return RoleTrainer
}

// IsChief reports whether this task is the chief (or master): rank 0, the
// trainer that does the job's one-off work such as writing summaries.
func (c *Config) IsChief() bool {
	return c.Task.Type == TypeChief || c.Task.Type == TypeMaster
}

// ID returns a node id unique in the cluster, "<type>-<index>", such as
// "ps-0" or "worker-2".
func (c *Config) ID() string {
	return c.Task.Type + "-" + strconv.Itoa(c.Task.Index)
}

// chiefs returns the number of chief and master entries (0 or 1).
func (c *Config) chiefs() int { return len(c.Cluster[TypeChief]) + len(c.Cluster[TypeMaster]) }

// Rank returns this trainer's rank among Workers(): the chief is rank 0 and
// worker i is rank i+1 when there is a chief, i otherwise. Ranks of ps and
// evaluator tasks are errors wrapping ErrInvalid.
func (c *Config) Rank() (int, error) {
	switch c.Task.Type {
	case TypeChief, TypeMaster:
		return 0, nil
	case TypeWorker:
		return c.chiefs() + c.Task.Index, nil
	}
	return 0, fmt.Errorf("%w: a %s task has no trainer rank", ErrInvalid, c.Task.Type)
}

// Workers returns the number of trainers that push gradients: worker entries
// plus the chief (or master). It is the count sync mode aggregates over.
func (c *Config) Workers() int {
	return len(c.Cluster[TypeWorker]) + c.chiefs()
}

// PSSeeds returns the gossip addresses of the ps tasks, HOST:PORT exactly as
// TF_CONFIG gives them (the TF_CONFIG port is the gossip port). A ps task
// gets the other ps tasks only, not itself.
func (c *Config) PSSeeds() []string {
	var out []string
	for i, a := range c.Cluster[TypePS] {
		if c.Task.Type == TypePS && i == c.Task.Index {
			continue
		}
		out = append(out, a)
	}
	return out
}

// Self returns this task's own TF_CONFIG address; evaluator tasks, which
// are not in the cluster, get an error wrapping ErrInvalid.
func (c *Config) Self() (string, error) {
	addrs := c.Cluster[c.Task.Type]
	if c.Task.Index >= len(addrs) {
		return "", fmt.Errorf("%w: task %s %d has no address in the cluster", ErrInvalid, c.Task.Type, c.Task.Index)
	}
	return addrs[c.Task.Index], nil
}

// Endpoints are the addresses a task binds and advertises, derived from its
// TF_CONFIG entry HOST:PORT.
type Endpoints struct {
	// Host is the entry's host: the name peers reach this task by.
	Host string
	// Gossip is HOST:PORT, the memberlist address peers dial (TCP and
	// UDP); GossipBind is "0.0.0.0:PORT", all IPv4 interfaces, for binding
	// it: HOST is a service DNS name, not a local address, and memberlist
	// then advertises the pod's own IP.
	Gossip, GossipBind string
	// GRPC is HOST:PORT+GRPCPortOffset; GRPCBind is
	// "0.0.0.0:PORT+GRPCPortOffset" for listening. A psd bound there
	// advertises its interface address in gossip metadata.
	GRPC, GRPCBind string
}

// Endpoints returns this task's addresses (see Endpoints and the package
// documentation's port convention).
func (c *Config) Endpoints() (Endpoints, error) {
	self, err := c.Self()
	if err != nil {
		return Endpoints{}, err
	}
	host, port, err := splitAddr(self)
	if err != nil { // Parse checked it; a hand-built Config may not be.
		return Endpoints{}, fmt.Errorf("%w: %q: %v", ErrInvalid, self, err)
	}
	g := strconv.Itoa(port + GRPCPortOffset)
	return Endpoints{
		Host:       host,
		Gossip:     self,
		GossipBind: net.JoinHostPort(wildcard, strconv.Itoa(port)),
		GRPC:       net.JoinHostPort(host, g),
		GRPCBind:   net.JoinHostPort(wildcard, g),
	}, nil
}
