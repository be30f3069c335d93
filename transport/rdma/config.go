package rdma

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/flowps/flowps/ps"
)

// Provider names accepted in configs.
const (
	// ProviderVerbs is RDMA over RoCE/InfiniBand NICs.
	ProviderVerbs = "verbs;ofi_rxm"
	// ProviderTCP runs the same code over TCP sockets (tests, CI).
	ProviderTCP = "tcp;ofi_rxm"
	// ProviderSHM is shared memory between processes of one host.
	ProviderSHM = "shm"
)

// ErrNoRDMA is returned by every constructor of a binary built without the
// rdma build tag.
var ErrNoRDMA = errors.New("flowps built without RDMA support: rebuild with -tags rdma")

// ErrNoProvider means libfabric has no usable provider of the asked name.
var ErrNoProvider = errors.New("rdma: libfabric provider unavailable")

// ErrMemlock means the memlock limit (ulimit -l) is below what a provider
// that pins registered memory (verbs) needs for the staging areas.
var ErrMemlock = errors.New("rdma: memlock limit too low")

// ErrTorn means a frame's version words did not match: it was overwritten
// while being transferred. Callers never see it; the transport retries.
var ErrTorn = errors.New("rdma: torn frame")

// ServerConfig configures a Server. DefaultServerConfig fills every field;
// a zero field takes its default.
type ServerConfig struct {
	// Provider is the libfabric provider: ProviderVerbs, ProviderTCP or
	// ProviderSHM. Default ProviderTCP, which runs anywhere.
	Provider string
	// Node is the source address the endpoint binds: an IP address for
	// verbs and tcp (default "127.0.0.1" so tests never leave the host;
	// set it to the address peers reach), ignored for shm.
	Node string
	// Service is the port for verbs and tcp (default "0": any free port).
	Service string
	// MaxAreaBytes caps one client's staging area, which bounds the largest
	// request or response frame. Default 256 MiB: a 64 MiB tensor fits with
	// room for concurrent requests. The area is mmap'd lazily, so untouched
	// pages cost no memory (but verbs pins all of it: see memlock).
	MaxAreaBytes int64
	// MaxClients bounds connected clients (default 1024, at most 4095 since
	// 12 bits of the 32-bit immediate name the client).
	MaxClients int
	// IdleTimeout drops a client that sent nothing (pings included) for this
	// long and frees its area. Default 30 s; clients ping every second.
	IdleTimeout time.Duration
	// Logger receives connection events; default discards.
	Logger *slog.Logger
}

// DefaultServerConfig returns the defaults documented on ServerConfig.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{
		Provider:     ProviderTCP,
		Node:         "127.0.0.1",
		Service:      "0",
		MaxAreaBytes: 256 << 20,
		MaxClients:   1024,
		IdleTimeout:  30 * time.Second,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func (c ServerConfig) withDefaults() ServerConfig {
	d := DefaultServerConfig()
	if c.Provider == "" {
		c.Provider = d.Provider
	}
	if c.Node == "" {
		c.Node = d.Node
	}
	if c.Service == "" {
		c.Service = d.Service
	}
	if c.MaxAreaBytes == 0 {
		c.MaxAreaBytes = d.MaxAreaBytes
	}
	if c.MaxClients == 0 {
		c.MaxClients = d.MaxClients
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// Validate reports the first invalid field.
func (c ServerConfig) Validate() error {
	c = c.withDefaults()
	if err := validProvider(c.Provider); err != nil {
		return err
	}
	if c.MaxAreaBytes < minAreaBytes || c.MaxAreaBytes > maxAreaBytes {
		return ps.Errorf(ps.ErrInvalidArgument, "rdma: MaxAreaBytes %d outside [%d, %d]", c.MaxAreaBytes, minAreaBytes, maxAreaBytes)
	}
	if c.MaxClients < 1 || c.MaxClients > maxClients {
		return ps.Errorf(ps.ErrInvalidArgument, "rdma: MaxClients %d outside [1, %d]", c.MaxClients, maxClients)
	}
	if c.IdleTimeout < 0 {
		return ps.Errorf(ps.ErrInvalidArgument, "rdma: negative IdleTimeout")
	}
	return nil
}

// DialerConfig configures the client side.
type DialerConfig struct {
	// Provider, when set, must match the provider named in dialed
	// addresses; empty accepts the address's provider.
	Provider string
	// Node is the source address of client endpoints for verbs and tcp
	// (default "127.0.0.1"); ignored for shm.
	Node string
	// AreaBytes is the staging area asked of each server: the largest
	// request plus response in flight at once. Default 128 MiB; the server
	// may grant less (its MaxAreaBytes).
	AreaBytes int64
	// MaxInflight bounds outstanding requests per connection (credits).
	// Default 64.
	MaxInflight int
	// HandshakeTimeout bounds the handshake of a Dial (ctx may end it
	// sooner). Default 5 s.
	HandshakeTimeout time.Duration
	// PingInterval is how often an idle connection pings its server.
	// Default 1 s.
	PingInterval time.Duration
	// DeadAfter declares the server gone (ps.ErrUnavailable) when nothing
	// was heard from it for this long. Default 5 s.
	DeadAfter time.Duration
	// Retries bounds re-sends of a request whose frame arrived torn.
	// Default 3.
	Retries int
	// NoSharedArea, for shm, keeps the staging area private and has the
	// provider copy every frame into the server's mirror (process_vm_readv)
	// as the other providers do. By default (false) a shm client maps its
	// area from a memfd that the server maps too, so frames are written in
	// place and the fabric carries only notices; a server that cannot map
	// it (another user, no /proc access) falls back to a private mirror.
	NoSharedArea bool
	// Logger receives connection events; default discards.
	Logger *slog.Logger
}

// DefaultDialerConfig returns the defaults documented on DialerConfig.
func DefaultDialerConfig() DialerConfig {
	return DialerConfig{
		Node:             "127.0.0.1",
		AreaBytes:        128 << 20,
		MaxInflight:      64,
		HandshakeTimeout: 5 * time.Second,
		PingInterval:     time.Second,
		DeadAfter:        5 * time.Second,
		Retries:          3,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func (c DialerConfig) withDefaults() DialerConfig {
	d := DefaultDialerConfig()
	if c.Node == "" {
		c.Node = d.Node
	}
	if c.AreaBytes == 0 {
		c.AreaBytes = d.AreaBytes
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = d.MaxInflight
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = d.HandshakeTimeout
	}
	if c.PingInterval == 0 {
		c.PingInterval = d.PingInterval
	}
	if c.DeadAfter == 0 {
		c.DeadAfter = d.DeadAfter
	}
	if c.Retries == 0 {
		c.Retries = d.Retries
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// Validate reports the first invalid field.
func (c DialerConfig) Validate() error {
	c = c.withDefaults()
	if c.Provider != "" {
		if err := validProvider(c.Provider); err != nil {
			return err
		}
	}
	if c.AreaBytes < minAreaBytes || c.AreaBytes > maxAreaBytes {
		return ps.Errorf(ps.ErrInvalidArgument, "rdma: AreaBytes %d outside [%d, %d]", c.AreaBytes, minAreaBytes, maxAreaBytes)
	}
	if c.MaxInflight < 1 || c.MaxInflight > 1024 {
		return ps.Errorf(ps.ErrInvalidArgument, "rdma: MaxInflight %d outside [1, 1024]", c.MaxInflight)
	}
	if c.PingInterval < 0 || c.DeadAfter < 0 || c.HandshakeTimeout < 0 || c.Retries < 0 {
		return ps.Errorf(ps.ErrInvalidArgument, "rdma: negative duration or retry count")
	}
	if c.DeadAfter <= c.PingInterval {
		return ps.Errorf(ps.ErrInvalidArgument, "rdma: DeadAfter %v must exceed PingInterval %v", c.DeadAfter, c.PingInterval)
	}
	return nil
}

func validProvider(p string) error {
	switch p {
	case ProviderVerbs, ProviderTCP, ProviderSHM:
		return nil
	}
	return ps.Errorf(ps.ErrInvalidArgument, "rdma: unknown provider %q (want %q, %q or %q)", p, ProviderVerbs, ProviderTCP, ProviderSHM)
}

// FormatAddr renders a server endpoint as a dialable address:
// "<provider>|<hex of the fabric endpoint name>", e.g.
// "tcp;ofi_rxm|02009c4f7f000001...". The provider comes first because an
// endpoint name means nothing to another provider.
func FormatAddr(provider string, name []byte) string {
	return provider + "|" + hex.EncodeToString(name)
}

// ParseAddr splits an address made by FormatAddr.
func ParseAddr(addr string) (provider string, name []byte, err error) {
	prov, hexName, ok := strings.Cut(addr, "|")
	if !ok {
		return "", nil, ps.Errorf(ps.ErrInvalidArgument, "rdma: address %q is not provider|hexname", addr)
	}
	if err := validProvider(prov); err != nil {
		return "", nil, err
	}
	if len(hexName) == 0 || len(hexName)%2 != 0 || len(hexName) > 2*maxNameLen {
		return "", nil, ps.Errorf(ps.ErrInvalidArgument, "rdma: address %q: bad endpoint name length", addr)
	}
	name, err = hex.DecodeString(hexName)
	if err != nil {
		return "", nil, ps.Errorf(ps.ErrInvalidArgument, "rdma: address %q: %v", addr, err)
	}
	return prov, name, nil
}

// checkMemlock fails early, with the fix in the message, when provider pins
// registered memory and bytes will not fit under RLIMIT_MEMLOCK.
func checkMemlock(provider string, bytes int64) error {
	if provider != ProviderVerbs {
		return nil // tcp and shm do not pin what they register
	}
	lim, unlimited, err := memlockLimit()
	if err != nil || unlimited || uint64(bytes) <= lim {
		return nil
	}
	return fmt.Errorf("%w: registering %d MiB of staging area needs that much locked memory, the limit is %d KiB (ulimit -l); raise it (limits.conf memlock, systemd LimitMEMLOCK=infinity) or lower the area size", ErrMemlock, bytes>>20, lim>>10)
}
