package sharding

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// MaxMetaSize is the largest JSON encoding of a Member that gossip carries:
// memberlist's node metadata limit, in bytes.
const MaxMetaSize = memberlist.MetaMaxSize

// The membership profiles. A profile fixes memberlist's timers; see
// MembershipConfig.Profile for what each one detects and how fast.
const (
	// ProfileLAN is memberlist's LAN profile: probes every 1 s with a
	// 500 ms timeout, gossip every 200 ms; a suspect is declared dead after
	// 4·max(1, log10 n) s, up to 6 times that while no other node confirms
	// the suspicion. Measured on 127.0.0.1, 3 nodes: a crashed node
	// (Shutdown without Leave) is dropped by both others after 5.8 s;
	// joins converge in about 200 ms.
	ProfileLAN = "lan"
	// ProfileLocal is for tests and clusters on one machine: probes every
	// 200 ms with a 100 ms timeout, gossip every 50 ms, a suspicion timeout
	// of 600 ms (up to 3.6 s while unconfirmed). Worst case for a crash to
	// be detected in a small cluster: about 4 s. Measured on 127.0.0.1, 3
	// nodes, 10 runs: crash detected in 0.95-1.15 s, joins converge in
	// 50-55 ms, a Leave is seen in about 50 ms.
	ProfileLocal = "local"
)

// DefaultBindAddr is where gossip listens when MembershipConfig.BindAddr is
// empty: every interface, memberlist's customary port.
const DefaultBindAddr = "0.0.0.0:7946"

// MembershipConfig configures a Membership. The zero value of every field but
// Self is usable.
type MembershipConfig struct {
	// Self describes this node. Self.ID is required and names the node in
	// gossip (it must be unique in the cluster); Self.Role must be RolePS or
	// RoleTrainer. Self.Gossip is ignored: it is filled in with the
	// advertised gossip address.
	Self Member
	// BindAddr is the HOST:PORT gossip listens on, TCP and UDP. Port 0
	// picks a free port (read it back from Self().Gossip). Empty means
	// DefaultBindAddr.
	BindAddr string
	// AdvertiseAddr is the HOST:PORT other nodes reach this one at. Empty
	// means the bind address, or, when binding every interface, the first
	// private IPv4 address with the bound port.
	AdvertiseAddr string
	// Seeds are the HOST:PORT gossip addresses Join contacts when it is
	// given none. Empty means Join without seeds does nothing.
	Seeds []string
	// SecretKey enables gossip encryption (AES-GCM) with this key; it must
	// be 16, 24 or 32 bytes. Nodes with another key, or none, cannot join:
	// their messages are rejected. Empty means no encryption.
	SecretKey []byte
	// Profile chooses the failure detector's timers: ProfileLocal or
	// ProfileLAN. Empty means ProfileLAN.
	Profile string
	// Logger receives this package's and memberlist's logs (memberlist's
	// [DEBUG]/[INFO]/[WARN]/[ERR] lines become slog records at the same
	// level with component=memberlist). Nil discards them.
	Logger *slog.Logger
}

// profile holds the timers of one profile beyond memberlist's own config.
type profile struct {
	ml func() *memberlist.Config
	// joinBackoff and maxJoinBackoff bound the pause between join
	// attempts; opTimeout bounds Leave and UpdateSelf when ctx has no
	// deadline.
	joinBackoff, maxJoinBackoff, opTimeout time.Duration
	// reconnectEvery is how often failed members (and, when this node is
	// alone, the seeds) are contacted again, so that the two sides of a
	// healed network partition merge; reconnectFor is how long a failed
	// member keeps being tried.
	reconnectEvery, reconnectFor time.Duration
}

var profiles = map[string]profile{
	ProfileLAN: {
		ml: func() *memberlist.Config {
			c := memberlist.DefaultLANConfig()
			c.DeadNodeReclaimTime = c.GossipToTheDeadTime
			return c
		},
		joinBackoff: 200 * time.Millisecond, maxJoinBackoff: 5 * time.Second,
		opTimeout:      5 * time.Second,
		reconnectEvery: 10 * time.Second, reconnectFor: 24 * time.Hour,
	},
	ProfileLocal: {
		ml: func() *memberlist.Config {
			c := memberlist.DefaultLocalConfig()
			c.TCPTimeout = time.Second
			c.IndirectChecks = 1
			c.RetransmitMult = 2
			c.SuspicionMult = 3
			c.SuspicionMaxTimeoutMult = 6
			c.ProbeInterval = 200 * time.Millisecond
			c.ProbeTimeout = 100 * time.Millisecond
			c.GossipInterval = 50 * time.Millisecond
			c.PushPullInterval = 5 * time.Second
			c.GossipToTheDeadTime = 5 * time.Second
			c.DeadNodeReclaimTime = time.Second
			return c
		},
		joinBackoff: 50 * time.Millisecond, maxJoinBackoff: time.Second,
		opTimeout:      2 * time.Second,
		reconnectEvery: time.Second, reconnectFor: 10 * time.Minute,
	},
}

// Membership is this node's view of the cluster, kept by gossip over
// hashicorp/memberlist. Every exported method is safe for concurrent use.
//
// The view holds the alive members whose metadata decodes to a valid Member
// whose ID equals its gossip name; a peer that gossips anything else is
// logged and left out. Each change of the view (a join, a leave, a failure,
// a metadata update) increments the epoch.
type Membership struct {
	log  *slog.Logger
	prof profile
	ml   *memberlist.Memberlist
	// mlWriter carries memberlist's log lines to log until Shutdown.
	mlWriter *slogWriter
	// seeds is cfg.Seeds, copied.
	seeds []string

	// metaMu guards self and meta, read by memberlist through NodeMeta.
	metaMu sync.Mutex
	self   Member
	meta   []byte

	// mu guards the view and the subscribers. memberlist calls the event
	// hooks with its node lock held, so nothing holding mu calls into
	// memberlist.
	mu      sync.Mutex
	members map[string]Member
	// failed holds members that failed (not left), by name, with their
	// gossip address and when they failed, for the reconnect loop.
	failed map[string]failedMember
	// joined are the seeds a Join reached, tried again while alone.
	joined []string
	epoch  uint64
	subs   map[chan View]struct{}
	ended  bool // subscribers closed; no more views

	// lifeMu serialises Leave and UpdateSelf with Shutdown (memberlist
	// panics on Leave after Shutdown).
	lifeMu sync.Mutex
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup // join attempts in flight
}

// NewMembership validates cfg, binds the gossip address and starts gossip.
// The new node is alone in its cluster until Join. A bind failure (such as a
// port in use) returns an error wrapping ErrBind that names the address.
func NewMembership(cfg MembershipConfig) (*Membership, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Profile == "" {
		cfg.Profile = ProfileLAN
	}
	prof, ok := profiles[cfg.Profile]
	if !ok {
		return nil, fmt.Errorf("%w: unknown profile %q (want %q or %q)", ErrInvalidConfig, cfg.Profile, ProfileLocal, ProfileLAN)
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = DefaultBindAddr
	}
	bindHost, bindPort, err := splitHostPort("bind address", cfg.BindAddr)
	if err != nil {
		return nil, err
	}
	var advHost string
	advPort := -1
	if cfg.AdvertiseAddr != "" {
		if advHost, advPort, err = splitHostPort("advertise address", cfg.AdvertiseAddr); err != nil {
			return nil, err
		}
	}
	for _, s := range cfg.Seeds {
		if _, _, err := splitHostPort("seed", s); err != nil {
			return nil, err
		}
	}
	switch len(cfg.SecretKey) {
	case 0, 16, 24, 32:
	default:
		return nil, fmt.Errorf("%w: gossip key is %d bytes, want 16, 24 or 32", ErrInvalidConfig, len(cfg.SecretKey))
	}
	self := cfg.Self
	self.Gossip = ""
	meta, err := encodeMember(self)
	if err != nil {
		return nil, err
	}

	logger = logger.With("node", self.ID)
	mlWriter := &slogWriter{log: logger.With("component", "memberlist")}
	mlLog := log.New(mlWriter, "", 0)
	nt, err := bindTransport(bindHost, bindPort, mlLog)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrBind, cfg.BindAddr, err)
	}

	m := &Membership{
		mlWriter: mlWriter,
		log:      logger,
		prof:     prof,
		seeds:    slices.Clone(cfg.Seeds),
		self:     self,
		meta:     meta,
		members:  make(map[string]Member),
		failed:   make(map[string]failedMember),
		subs:     make(map[chan View]struct{}),
		done:     make(chan struct{}),
	}
	mc := prof.ml()
	mc.Name = self.ID
	mc.Transport = nt
	mc.BindAddr = bindHost
	mc.BindPort = nt.GetAutoBindPort()
	mc.AdvertiseAddr = advHost
	mc.AdvertisePort = mc.BindPort
	if advPort >= 0 {
		mc.AdvertisePort = advPort
	}
	if len(cfg.SecretKey) > 0 {
		mc.SecretKey = slices.Clone(cfg.SecretKey)
	}
	mc.Logger = mlLog
	mc.Delegate = (*hooks)(m)
	mc.Events = (*hooks)(m)
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = nt.Shutdown()
		return nil, fmt.Errorf("sharding: start gossip on %s: %w", cfg.BindAddr, err)
	}
	m.ml = ml
	m.metaMu.Lock()
	m.self.Gossip = ml.LocalNode().Address()
	m.metaMu.Unlock()
	m.wg.Add(1)
	go m.reconnectLoop()
	logger.Debug("gossip started", "bind", cfg.BindAddr, "advertise", ml.LocalNode().Address(), "profile", cfg.Profile)
	return m, nil
}

// bindTransport binds memberlist's TCP+UDP transport. With port 0 the kernel
// picks a TCP port that may be taken for UDP, so that case retries.
func bindTransport(host string, port int, l *log.Logger) (*memberlist.NetTransport, error) {
	tries := 1
	if port == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var nt *memberlist.NetTransport
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{host},
			BindPort:  port,
			Logger:    l,
		})
		if err == nil {
			return nt, nil
		}
	}
	return nil, err
}

func splitHostPort(what, addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %s %q: %v", ErrInvalidConfig, what, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%w: %s %q: bad port", ErrInvalidConfig, what, addr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// validate checks what every node must be able to rely on in a Member.
func (m Member) validate() error {
	if m.ID == "" {
		return fmt.Errorf("%w: member has no ID", ErrInvalidConfig)
	}
	if m.Role != RolePS && m.Role != RoleTrainer {
		return fmt.Errorf("%w: member %s: role %q, want %q or %q", ErrInvalidConfig, m.ID, m.Role, RolePS, RoleTrainer)
	}
	if math.IsNaN(m.Capacity) || math.IsInf(m.Capacity, 0) || m.Capacity < 0 {
		return fmt.Errorf("%w: member %s: capacity %v, want finite and ≥ 0", ErrInvalidConfig, m.ID, m.Capacity)
	}
	if m.Addr != "" {
		if _, _, err := net.SplitHostPort(m.Addr); err != nil {
			return fmt.Errorf("%w: member %s: endpoint %q: %v", ErrInvalidConfig, m.ID, m.Addr, err)
		}
	}
	return nil
}

// encodeMember validates m and encodes it as node metadata.
func encodeMember(m Member) ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%w: member %s: %v", ErrInvalidConfig, m.ID, err)
	}
	if len(b) > MaxMetaSize {
		return nil, fmt.Errorf("%w: member %s encodes to %d bytes, limit %d", ErrMetaTooLarge, m.ID, len(b), MaxMetaSize)
	}
	return b, nil
}

// decodeNode turns a gossiped node into a Member. Its Gossip address is
// the one memberlist reached it at, not anything it claims.
func decodeNode(n *memberlist.Node) (Member, error) {
	var m Member
	if err := json.Unmarshal(n.Meta, &m); err != nil {
		return Member{}, fmt.Errorf("node %q: metadata: %w", n.Name, err)
	}
	if m.ID != n.Name {
		return Member{}, fmt.Errorf("node %q: metadata names %q", n.Name, m.ID)
	}
	if err := m.validate(); err != nil {
		return Member{}, fmt.Errorf("node %q: %w", n.Name, err)
	}
	m.Gossip = n.Address()
	return m, nil
}

// Self returns this node's member record, with Gossip set to the
// advertised gossip address.
func (m *Membership) Self() Member {
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	return m.self
}

// Join contacts seeds (cfg.Seeds when seeds is empty) and merges their state
// into this node's, retrying with exponential backoff until at least one
// seed answers or ctx ends. It returns how many seeds answered. With no
// seeds at all it returns 0, nil: the node is the first of its cluster.
//
// When no seed answered before ctx ended the error wraps ErrJoin and
// ctx.Err() and names the seeds and the last failure. One attempt contacts
// the seeds in turn, each bounded by the profile's TCP timeout (1 s local,
// 10 s lan); when ctx ends during an attempt Join returns at once and the
// attempt finishes in the background (Shutdown waits for it).
func (m *Membership) Join(ctx context.Context, seeds []string) (int, error) {
	if len(seeds) == 0 {
		seeds = m.seeds
	}
	if len(seeds) == 0 {
		return 0, nil
	}
	for _, s := range seeds {
		if _, _, err := splitHostPort("seed", s); err != nil {
			return 0, err
		}
	}
	seeds = slices.Clone(seeds)
	backoff := m.prof.joinBackoff
	var last error
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			if last == nil {
				last = err
			}
			return 0, fmt.Errorf("%w: no seed of %v answered in %d attempts (last: %v): %w", ErrJoin, seeds, attempt-1, last, err)
		}
		n, err := m.joinOnce(ctx, seeds)
		if n > 0 {
			if err != nil {
				m.log.Warn("some seeds did not answer", "seeds", seeds, "answered", n, "err", err)
			}
			m.log.Info("joined cluster", "seeds", seeds, "answered", n, "attempts", attempt)
			m.mu.Lock()
			m.joined = seeds
			m.mu.Unlock()
			return n, nil
		}
		if isCtxErr(ctx, err) {
			// ctx ended during the attempt; report it on the next turn.
			continue
		}
		if err == nil {
			err = fmt.Errorf("no seed answered")
		}
		if err == ErrClosed {
			return 0, fmt.Errorf("join %v: %w", seeds, ErrClosed)
		}
		last = flatError{err}
		m.log.Debug("join attempt failed", "seeds", seeds, "attempt", attempt, "err", err)
		wait := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-m.done:
			t.Stop()
			return 0, fmt.Errorf("join %v: %w", seeds, ErrClosed)
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, m.prof.maxJoinBackoff)
	}
}

// flatError prints memberlist's multi-line multierror on one line:
// "failed to join A: ...; failed to join B: ...".
type flatError struct{ error }

func (e flatError) Error() string {
	var parts []string
	for _, l := range strings.Split(e.error.Error(), "\n") {
		l = strings.TrimSpace(l)
		l = strings.TrimPrefix(l, "* ")
		if l == "" || strings.HasSuffix(l, "occurred:") {
			continue
		}
		parts = append(parts, l)
	}
	return strings.Join(parts, "; ")
}

func (e flatError) Unwrap() error { return e.error }

func isCtxErr(ctx context.Context, err error) bool {
	return ctx.Err() != nil && err == ctx.Err()
}

// joinOnce runs one memberlist.Join, returning early if ctx ends.
func (m *Membership) joinOnce(ctx context.Context, seeds []string) (int, error) {
	m.lifeMu.Lock()
	if m.closed {
		m.lifeMu.Unlock()
		return 0, ErrClosed
	}
	type result struct {
		n   int
		err error
	}
	res := make(chan result, 1)
	m.wg.Add(1)
	m.lifeMu.Unlock()
	go func() {
		defer m.wg.Done()
		n, err := m.ml.Join(seeds)
		res <- result{n, err}
	}()
	select {
	case r := <-res:
		return r.n, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Members returns the alive members, sorted by ID, this node included.
func (m *Membership) Members() []Member {
	return m.View().Members
}

// Epoch returns the view's epoch: it starts at 1 when the node sees itself
// and increments on every change of the view.
func (m *Membership) Epoch() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.epoch
}

// View returns the current view. Its Members slice is shared: do not
// modify it.
func (m *Membership) View() View {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.viewLocked()
}

func (m *Membership) viewLocked() View {
	ms := make([]Member, 0, len(m.members))
	for _, x := range m.members {
		ms = append(ms, x)
	}
	slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return View{Epoch: m.epoch, Members: ms}
}

// Subscribe returns a channel of views and a function that cancels the
// subscription and closes the channel (calling it again does nothing).
//
// The channel holds at most one view, the newest: it starts with the
// current view, and each change replaces an unread view, so a slow reader
// skips intermediate views but always ends with the latest one, and epochs
// it reads only increase. Views are sent from memberlist's goroutines
// without ever blocking them; the Members slice of a view is shared by all
// subscribers and must not be modified. Shutdown closes every channel.
func (m *Membership) Subscribe() (<-chan View, func()) {
	ch := make(chan View, 1)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ended {
		close(ch)
		return ch, func() {}
	}
	ch <- m.viewLocked()
	m.subs[ch] = struct{}{}
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if _, ok := m.subs[ch]; ok {
				delete(m.subs, ch)
				close(ch)
			}
		})
	}
}

// publishLocked bumps the epoch and hands the new view to subscribers.
// Only goroutines holding mu send, so after draining a full channel the send
// cannot block.
func (m *Membership) publishLocked() {
	m.epoch++
	if len(m.subs) == 0 {
		return
	}
	v := m.viewLocked()
	for ch := range m.subs {
		select {
		case <-ch:
		default:
		}
		ch <- v
	}
}

// UpdateSelf replaces this node's member record (for example when an RDMA
// endpoint appears) and gossips it. The ID cannot change. It returns once
// the update has been broadcast to the cluster or, when that takes longer
// than ctx's deadline (or the profile's 2 s local / 5 s lan bound without
// one), with an error; the local view changes at once and the update keeps
// spreading either way. A record larger than MaxMetaSize is refused with
// ErrMetaTooLarge.
func (m *Membership) UpdateSelf(ctx context.Context, self Member) error {
	self.Gossip = ""
	meta, err := encodeMember(self)
	if err != nil {
		return fmt.Errorf("update self: %w", err)
	}
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.closed {
		return fmt.Errorf("update self: %w", ErrClosed)
	}
	m.metaMu.Lock()
	if self.ID != m.self.ID {
		id := m.self.ID
		m.metaMu.Unlock()
		return fmt.Errorf("%w: update self: ID %q, this node is %q", ErrInvalidConfig, self.ID, id)
	}
	self.Gossip = m.self.Gossip
	m.self = self
	m.meta = meta
	m.metaMu.Unlock()
	if err := m.ml.UpdateNode(m.opTimeout(ctx)); err != nil {
		return fmt.Errorf("update self %s: %w", self.ID, err)
	}
	return nil
}

// opTimeout is how long a memberlist call may wait: until ctx's deadline,
// else the profile's bound.
func (m *Membership) opTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return m.prof.opTimeout
}

// Leave tells the cluster that this node leaves and waits until the notice
// has been broadcast (bounded by ctx's deadline, else 2 s local / 5 s lan).
// Other nodes drop it from their views as soon as the notice reaches them,
// without waiting for failure detection. Call Shutdown afterwards; a node
// that left does not rejoin.
func (m *Membership) Leave(ctx context.Context) error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.closed {
		return fmt.Errorf("leave: %w", ErrClosed)
	}
	if err := m.ml.Leave(m.opTimeout(ctx)); err != nil {
		return fmt.Errorf("leave %s: %w", m.Self().ID, err)
	}
	m.log.Info("left cluster")
	return nil
}

// Shutdown stops gossip at once, without telling anyone: the others detect
// the silence as a failure (see the profiles). It closes the subscription
// channels and waits for join attempts in flight. Calling it again does
// nothing.
func (m *Membership) Shutdown() error {
	m.lifeMu.Lock()
	if m.closed {
		m.lifeMu.Unlock()
		return nil
	}
	m.closed = true
	close(m.done)
	err := m.ml.Shutdown()
	m.lifeMu.Unlock()
	m.wg.Wait()
	// memberlist's timers may still fire a probe that logs after its
	// Shutdown returned; nothing of this node may write to the caller's
	// logger once ours has.
	m.mlWriter.close()
	m.mu.Lock()
	m.ended = true
	for ch := range m.subs {
		close(ch)
	}
	m.subs = nil
	m.mu.Unlock()
	if err != nil {
		return fmt.Errorf("sharding: shutdown gossip: %w", err)
	}
	return nil
}

// hooks implements memberlist.Delegate and memberlist.EventDelegate for a
// Membership. memberlist calls the event hooks with its node lock held, from
// its own goroutines; they only take m.mu and never block.
type hooks Membership

var (
	_ memberlist.Delegate      = (*hooks)(nil)
	_ memberlist.EventDelegate = (*hooks)(nil)
)

// NodeMeta returns this node's encoded member record.
func (h *hooks) NodeMeta(limit int) []byte {
	m := (*Membership)(h)
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	if len(m.meta) > limit { // encodeMember checked MaxMetaSize already
		return nil
	}
	return slices.Clone(m.meta)
}

// NotifyMsg ignores user messages; this package sends none.
func (h *hooks) NotifyMsg([]byte) {}

// GetBroadcasts has nothing to broadcast.
func (h *hooks) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState has no state beyond node metadata.
func (h *hooks) LocalState(join bool) []byte { return nil }

// MergeRemoteState ignores remote state.
func (h *hooks) MergeRemoteState(buf []byte, join bool) {}

// NotifyJoin adds a node to the view.
func (h *hooks) NotifyJoin(n *memberlist.Node) { (*Membership)(h).upsert(n, "join") }

// NotifyUpdate replaces a node's record in the view.
func (h *hooks) NotifyUpdate(n *memberlist.Node) { (*Membership)(h).upsert(n, "update") }

// NotifyLeave drops a node that left or failed.
func (h *hooks) NotifyLeave(n *memberlist.Node) {
	m := (*Membership)(h)
	how := "failed"
	if n.State == memberlist.StateLeft {
		how = "left"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ended {
		return
	}
	if _, ok := m.members[n.Name]; !ok {
		return
	}
	delete(m.members, n.Name)
	if how == "failed" {
		m.failed[n.Name] = failedMember{addr: n.Address(), since: time.Now()}
	}
	m.publishLocked()
	m.log.Info("member "+how, "member", n.Name, "epoch", m.epoch)
}

func (m *Membership) upsert(n *memberlist.Node, event string) {
	mem, err := decodeNode(n)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ended {
		return
	}
	old, had := m.members[n.Name]
	if err != nil {
		m.log.Warn("ignoring member with bad metadata", "event", event, "err", err)
		if had {
			delete(m.members, n.Name)
			m.publishLocked()
		}
		return
	}
	delete(m.failed, n.Name)
	if had && old == mem {
		return
	}
	m.members[n.Name] = mem
	m.publishLocked()
	m.log.Info("member "+event, "member", mem.ID, "role", mem.Role, "gossip", mem.Gossip, "epoch", m.epoch)
}

// slogWriter adapts memberlist's log.Logger output to slog. After close it
// drops every line: a close waits for a Write in progress.
type slogWriter struct {
	log    *slog.Logger
	mu     sync.Mutex
	closed bool
}

func (w *slogWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

var _ io.Writer = (*slogWriter)(nil)

func (w *slogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return len(p), nil
	}
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		s := string(line)
		level := slog.LevelInfo
		for _, l := range []struct {
			tag   string
			level slog.Level
		}{
			{"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo},
			{"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}, {"[ERROR]", slog.LevelError},
		} {
			if rest, ok := strings.CutPrefix(s, l.tag); ok {
				s, level = strings.TrimSpace(rest), l.level
				break
			}
		}
		s = strings.TrimPrefix(s, "memberlist: ")
		if strings.Contains(s, "use of closed network connection") {
			// memberlist's goroutines race Shutdown closing their sockets;
			// that is how every clean stop ends, not a fault.
			level = slog.LevelDebug
		}
		w.log.Log(context.Background(), level, s)
	}
	return len(p), nil
}

// failedMember is a member that failed, kept for the reconnect loop.
type failedMember struct {
	addr  string
	since time.Time
}

// reconnectLoop contacts failed members, and the seeds while this node is
// alone, every reconnectEvery. memberlist never dials a dead node again by
// itself, so without this the two sides of a network partition that heals
// would each go on believing the other dead. It ends with Shutdown.
func (m *Membership) reconnectLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.prof.reconnectEvery)
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-t.C:
		}
		m.mu.Lock()
		var addrs []string
		for name, f := range m.failed {
			if time.Since(f.since) > m.prof.reconnectFor {
				delete(m.failed, name)
				continue
			}
			addrs = append(addrs, f.addr)
		}
		if len(m.members) <= 1 {
			addrs = append(addrs, m.joined...)
		}
		m.mu.Unlock()
		if len(addrs) == 0 {
			continue
		}
		m.lifeMu.Lock()
		closed := m.closed
		m.lifeMu.Unlock()
		if closed {
			return
		}
		if n, err := m.ml.Join(addrs); n > 0 {
			m.log.Info("reconnected", "contacted", n, "tried", addrs)
		} else {
			m.log.Debug("reconnect failed", "tried", addrs, "err", err)
		}
	}
}
