package auto

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/sharding"
	"github.com/flowps/flowps/transport/rdma"
)

// Modes of a Dialer.
const (
	// ModeAuto chooses per peer (the default; see the package doc).
	ModeAuto = "auto"
	// ModeGRPC dials every peer over gRPC.
	ModeGRPC = "grpc"
	// ModeRDMA dials every peer over RDMA and fails, never falls back,
	// when it cannot: for tests and benchmarks that must measure the fabric.
	ModeRDMA = "rdma"
)

// Transport names as Choice.Transport reports them.
const (
	TransportGRPC = "grpc"
	TransportRDMA = "rdma"
	// TransportNone: ModeRDMA could not reach the peer over RDMA (the
	// reason says why), so it is not connected.
	TransportNone = "none"
)

// Config configures a Dialer.
type Config struct {
	// Mode is ModeAuto, ModeGRPC or ModeRDMA; empty means ModeAuto.
	Mode string
	// Provider, when set, overrides the device checks of auto selection
	// with a libfabric provider: rdma.ProviderSHM, rdma.ProviderTCP or
	// rdma.ProviderVerbs. A peer is then reached over RDMA only when it
	// advertises that very provider. Empty means no override. Ignored in
	// ModeGRPC.
	Provider string
	// GRPC dials a peer's gRPC address (its sharding.Member.Addr). It also
	// carries replication calls (ps.Replicator), which the RDMA transport
	// does not, and is the fallback after a fabric error. Required.
	GRPC ps.Dialer
	// RDMA dials rdma.FormatAddr addresses (normally rdma.NewDialer). Nil
	// means gRPC only; ModeRDMA then refuses to start.
	RDMA ps.Dialer
	// Peer looks up the member whose gRPC Addr is addr in the current
	// membership view (for example by scanning sharding.Membership.Members).
	// It is called from Dial, possibly concurrently. Nil means no member is
	// ever known: every peer gets gRPC (ModeRDMA refuses to start).
	Peer func(addr string) (sharding.Member, bool)
	// Secure says the caller's gRPC connections use TLS. The RDMA
	// transport neither encrypts nor authenticates, so auto mode then uses
	// gRPC for every peer (saying why) and NewDialer refuses ModeRDMA.
	Secure bool
	// SameHostSHM lets auto mode (without a Provider override) reach a
	// peer on this machine over shm when that peer advertises shm. Off by
	// default because it is not faster for small calls: measured between
	// two processes on the 2-core development VM (benchmarks/transport
	// --child), a 4 KiB push or pull over shm takes about 1.1 ms at p50
	// against about 0.1 ms over gRPC, while a 4 MiB pull moves 0.82 GB/s
	// over shm against 0.50 GB/s over gRPC. Turn it on for jobs whose
	// tensors are megabytes.
	SameHostSHM bool
	// Host is this machine's id as sharding.Member.Host carries it, used
	// with SameHostSHM to recognise same-host peers. Empty means
	// os.Hostname.
	Host string
	// Logger receives one line per peer per change of transport (with the
	// reason) and one per fallback; default discards.
	Logger *slog.Logger
}

// Choice is the transport a Dialer uses for one peer, and why.
type Choice struct {
	// Peer is the member id ("" when the address is not in the view) and
	// Addr its gRPC address, the key the choice is kept under.
	Peer string `json:"peer"`
	Addr string `json:"addr"`
	// Transport is TransportRDMA or TransportGRPC (TransportNone when
	// ModeRDMA could not connect); Provider the libfabric provider of RDMA.
	Transport string `json:"transport"`
	Provider  string `json:"provider,omitempty"`
	// Reason says why, in words fit for a log or a status page.
	Reason string `json:"reason"`
	// Since is when this choice was made.
	Since time.Time `json:"since"`
	// Fallbacks counts fabric errors after which calls to this peer moved
	// to gRPC (over the Dialer's life).
	Fallbacks int `json:"fallbacks"`
}

// Dialer is a ps.Dialer that picks the transport per peer. It is safe for
// concurrent use. It does not own the GRPC and RDMA dialers of its Config:
// close those after the Services it returned.
type Dialer struct {
	cfg  Config
	log  *slog.Logger
	host string

	// choose and available are rdma.Choose and rdma.Available; tests of
	// this package replace them to run the RDMA path over fakes.
	choose    func(ctx context.Context, peerHost, peerProvider, override string) rdma.Decision
	available func() bool
	now       func() time.Time

	mu    sync.Mutex
	peers map[string]*peerState // by gRPC address
}

// peerState is what the Dialer remembers about one peer address.
type peerState struct {
	choice Choice
	// brokenFabric is the advertised fabric address whose connection
	// failed at run time while gRPC answered; auto mode uses gRPC for the
	// peer until it advertises another endpoint (a restart).
	brokenFabric string
}

// NewDialer validates cfg and returns a Dialer. ModeRDMA fails here, at
// start-up, when this binary cannot use libfabric.
func NewDialer(cfg Config) (*Dialer, error) {
	return newDialer(cfg, rdma.Choose, rdma.Available)
}

// newDialer is NewDialer with the RDMA checks supplied (tests pass fakes).
func newDialer(cfg Config, choose func(ctx context.Context, peerHost, peerProvider, override string) rdma.Decision, available func() bool) (*Dialer, error) {
	if cfg.Mode == "" {
		cfg.Mode = ModeAuto
	}
	switch cfg.Mode {
	case ModeAuto, ModeGRPC, ModeRDMA:
	default:
		return nil, ps.Errorf(ps.ErrInvalidArgument, "transport %q: want %s, %s or %s", cfg.Mode, ModeAuto, ModeGRPC, ModeRDMA)
	}
	if cfg.GRPC == nil {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "auto transport: GRPC dialer is nil")
	}
	if cfg.Provider != "" {
		switch cfg.Provider {
		case rdma.ProviderSHM, rdma.ProviderTCP, rdma.ProviderVerbs:
		default:
			return nil, ps.Errorf(ps.ErrInvalidArgument, "rdma provider %q: want %q, %q or %q", cfg.Provider, rdma.ProviderSHM, rdma.ProviderTCP, rdma.ProviderVerbs)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d := &Dialer{
		cfg: cfg, log: cfg.Logger, host: cfg.Host,
		choose: choose, available: available, now: time.Now,
		peers: map[string]*peerState{},
	}
	if d.host == "" {
		d.host, _ = os.Hostname()
	}
	if cfg.Mode == ModeRDMA {
		switch {
		case cfg.Secure:
			return nil, ps.Errorf(ps.ErrInvalidArgument, "transport rdma with TLS: the RDMA transport neither encrypts nor authenticates")
		case cfg.RDMA == nil:
			return nil, ps.Errorf(ps.ErrInvalidArgument, "transport rdma: no RDMA dialer configured")
		case cfg.Peer == nil:
			return nil, ps.Errorf(ps.ErrInvalidArgument, "transport rdma: no membership lookup (Peer) to find fabric endpoints")
		case !available():
			return nil, fmt.Errorf("transport rdma: %w", rdma.ErrNoRDMA)
		}
	}
	return d, nil
}

// Choices returns the current choice for every peer dialed so far, sorted
// by address, for status pages and metrics.
func (d *Dialer) Choices() []Choice {
	d.mu.Lock()
	out := make([]Choice, 0, len(d.peers))
	for _, p := range d.peers {
		out = append(out, p.choice)
	}
	d.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out
}

// plan is Dial's decision for one peer before any connection is made.
type plan struct {
	member    sharding.Member
	known     bool
	rdma      bool
	provider  string
	fabric    string // the rdma address to dial
	reason    string
	mustRDMA  bool // ModeRDMA: failing to use RDMA is an error
	failedErr error
}

// decide runs the selection for the peer at addr.
func (d *Dialer) decide(ctx context.Context, addr string) plan {
	var p plan
	if d.cfg.Peer != nil {
		p.member, p.known = d.cfg.Peer(addr)
	}
	p.mustRDMA = d.cfg.Mode == ModeRDMA
	switch {
	case d.cfg.Mode == ModeGRPC:
		p.reason = "transport grpc requested"
		return p
	case d.cfg.RDMA == nil:
		p.reason = "no RDMA dialer configured"
		return p
	case d.cfg.Secure:
		p.reason = "TLS is on, and the RDMA transport neither encrypts nor authenticates"
		return p
	case !p.known:
		p.reason = "peer " + addr + " is not in the membership view, so its fabric endpoint is unknown"
		return p
	case p.member.Fabric == "" || p.member.FabricProvider == "":
		p.reason = fmt.Sprintf("peer %s advertises no fabric endpoint", p.member.ID)
		return p
	}
	name, err := hex.DecodeString(p.member.Fabric)
	if err != nil || len(name) == 0 {
		p.reason = fmt.Sprintf("peer %s advertises a malformed fabric endpoint %q", p.member.ID, p.member.Fabric)
		return p
	}
	fabric := rdma.FormatAddr(p.member.FabricProvider, name)
	if _, _, err := rdma.ParseAddr(fabric); err != nil {
		p.reason = fmt.Sprintf("peer %s advertises an unusable fabric endpoint: %v", p.member.ID, err)
		return p
	}
	host := peerHost(p.member)
	var dec rdma.Decision
	if d.cfg.SameHostSHM && d.cfg.Provider == "" && p.member.FabricProvider == rdma.ProviderSHM && p.member.Host != "" && p.member.Host == d.host {
		// Same machine, and the caller asked for shm there (see
		// Config.SameHostSHM for when it pays); no device check applies.
		if d.available() {
			dec = rdma.Decision{RDMA: true, Provider: rdma.ProviderSHM, Reason: "same host " + d.host + " and the peer advertises shm"}
		} else {
			dec = rdma.Decision{Reason: rdma.ErrNoRDMA.Error()}
		}
	} else {
		dec = d.choose(ctx, host, p.member.FabricProvider, d.cfg.Provider)
	}
	p.reason = dec.Reason
	if !dec.RDMA {
		return p
	}
	d.mu.Lock()
	st := d.peers[addr]
	broken := st != nil && st.brokenFabric == fabric
	d.mu.Unlock()
	if broken && !p.mustRDMA {
		p.reason = fmt.Sprintf("fabric endpoint of %s failed at run time and gRPC answered; staying on gRPC until it advertises a new one", p.member.ID)
		return p
	}
	p.rdma, p.provider, p.fabric = true, dec.Provider, fabric
	return p
}

// peerHost is the host part of a member's gRPC address (what routes to
// it), or its Host id when the address has none.
func peerHost(m sharding.Member) string {
	if h, _, err := net.SplitHostPort(m.Addr); err == nil && h != "" {
		return h
	}
	return m.Host
}

// record stores the choice for addr and logs it when it changed.
func (d *Dialer) record(addr string, p plan, transport, provider, reason string) Choice {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.peers[addr]
	if st == nil {
		st = &peerState{}
		d.peers[addr] = st
	}
	c := st.choice
	changed := c.Since.IsZero() || c.Transport != transport || c.Provider != provider || c.Reason != reason || c.Peer != p.member.ID
	if !changed {
		return c
	}
	c.Peer, c.Addr, c.Transport, c.Provider, c.Reason, c.Since = p.member.ID, addr, transport, provider, reason, d.now()
	st.choice = c
	args := []any{"peer", c.Peer, "addr", addr, "transport", transport, "reason", reason}
	if provider != "" {
		args = append(args, "provider", provider)
	}
	d.log.Info("transport chosen", args...)
	return c
}

// Dial connects to the peer whose gRPC address is addr over the transport
// the selection picks for it (see the package doc). The Service it returns
// also implements ps.Replicator when the gRPC dialer's Services do, and
// always carries replication calls over gRPC.
func (d *Dialer) Dial(ctx context.Context, addr string) (ps.Service, error) {
	p := d.decide(ctx, addr)
	if p.mustRDMA && !p.rdma {
		d.record(addr, p, TransportNone, "", "transport rdma required: "+p.reason)
		return nil, fmt.Errorf("%w: transport rdma to %s: %s", ps.ErrUnavailable, addr, p.reason)
	}
	var fabricSvc ps.Service
	if p.rdma {
		svc, err := d.cfg.RDMA.Dial(ctx, p.fabric)
		switch {
		case err == nil:
			fabricSvc = svc
		case p.mustRDMA:
			d.record(addr, p, TransportNone, p.provider, "transport rdma required; dial failed: "+err.Error())
			if !errors.Is(err, ps.ErrUnavailable) {
				err = fmt.Errorf("%w: %w", ps.ErrUnavailable, err)
			}
			return nil, fmt.Errorf("transport rdma to %s (%s): %w", addr, p.fabric, err)
		case ctx.Err() != nil:
			return nil, fmt.Errorf("dial %s over rdma: %w", addr, ctx.Err())
		default:
			p.reason = fmt.Sprintf("%s; but the %s connection failed: %v", p.reason, p.provider, err)
			p.rdma = false
		}
	}
	grpcSvc, err := d.cfg.GRPC.Dial(ctx, addr)
	if err != nil {
		if fabricSvc != nil {
			fabricSvc.Close()
		}
		return nil, fmt.Errorf("dial %s over grpc: %w", addr, err)
	}
	ch := TransportGRPC
	prov := ""
	if fabricSvc != nil {
		ch, prov = TransportRDMA, p.provider
	}
	d.record(addr, p, ch, prov, p.reason)
	s := &service{d: d, addr: addr, peer: p.member.ID, fabricAddr: p.fabric, provider: p.provider, noFallback: p.mustRDMA, grpc: grpcSvc}
	if fabricSvc != nil {
		s.fabric = fabricSvc
		s.onFabric.Store(true)
	}
	if rep, ok := grpcSvc.(ps.Replicator); ok {
		return &replicatingService{service: s, rep: rep}, nil
	}
	return s, nil
}

// fellBack records that the fabric connection to addr failed with cause
// while gRPC answered, and logs it.
func (d *Dialer) fellBack(s *service, cause error) {
	d.mu.Lock()
	st := d.peers[s.addr]
	if st == nil {
		st = &peerState{}
		d.peers[s.addr] = st
	}
	st.brokenFabric = s.fabricAddr
	st.choice.Peer, st.choice.Addr = s.peer, s.addr
	st.choice.Transport, st.choice.Provider = TransportGRPC, ""
	st.choice.Reason = fmt.Sprintf("fell back from %s after a fabric error: %v", s.provider, cause)
	st.choice.Since = d.now()
	st.choice.Fallbacks++
	d.mu.Unlock()
	d.log.Warn("transport fallback", "peer", s.peer, "addr", s.addr, "from", TransportRDMA, "provider", s.provider, "to", TransportGRPC, "err", cause)
}

var _ ps.Dialer = (*Dialer)(nil)

// PeerFrom returns a Config.Peer that looks addr up among src's current
// members (a *sharding.Membership, or ps.StaticMembers in tests): the
// parameter server whose gRPC Addr is addr.
func PeerFrom(src ps.MemberSource) func(addr string) (sharding.Member, bool) {
	return func(addr string) (sharding.Member, bool) {
		for _, m := range src.Members() {
			if m.Addr == addr && m.Role == sharding.RolePS {
				return m, true
			}
		}
		return sharding.Member{}, false
	}
}
