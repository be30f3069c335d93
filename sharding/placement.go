package sharding

import (
	"hash/fnv"
	"math"
	"slices"
	"sort"
)

// Role is what a cluster member does.
type Role string

// The member roles.
const (
	RolePS      Role = "ps"
	RoleTrainer Role = "trainer"
)

// Member is one node of the cluster as gossip describes it. It travels as
// memberlist node metadata, so it stays small.
type Member struct {
	ID   string `json:"id"`
	Role Role   `json:"role"`
	// Addr is the gRPC endpoint (HOST:PORT); empty for trainers.
	Addr string `json:"addr,omitempty"`
	// Gossip is the memberlist address (HOST:PORT).
	Gossip string `json:"gossip,omitempty"`
	// Fabric is the RDMA fabric endpoint name (hex) and FabricProvider the
	// libfabric provider it was opened on; both empty without RDMA.
	Fabric         string `json:"fabric,omitempty"`
	FabricProvider string `json:"fabric_provider,omitempty"`
	// Host identifies the machine, so same-host peers can be recognised.
	Host string `json:"host,omitempty"`
	// Capacity weights placement; zero means 1.
	Capacity float64 `json:"capacity,omitempty"`
}

// weight is the member's placement weight: its capacity, or 1 when the
// capacity is zero, negative or not finite (a peer's bad value must not break
// everyone's placement).
func (m Member) weight() float64 {
	if !(m.Capacity > 0) || math.IsInf(m.Capacity, 0) {
		return 1
	}
	return m.Capacity
}

// score is the weighted rendezvous score of key on member: -w/ln(h) with h
// a hash of (key, member id) mapped into (0, 1). The member with the highest
// score owns the key; with equal weights this is plain highest-random-weight
// hashing, and with weights each member wins in proportion to its weight.
func score(key string, m Member) float64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write([]byte(m.ID))
	x := mix64(h.Sum64())
	u := (float64(x>>11) + 0.5) / (1 << 53) // (0, 1)
	return -m.weight() / math.Log(u)
}

// mix64 is the splitmix64 finaliser; it spreads fnv's weak low bits.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Place returns the up to r parameter-server members that hold key, best
// first: the first is the primary, the rest its replicas. Members whose role
// is not RolePS are ignored, and so are further entries with an ID already
// placed. Every node computes the same answer from the same member set,
// whatever its order. r ≤ 0 yields nil.
func Place(key string, members []Member, r int) []Member {
	if r <= 0 {
		return nil
	}
	type scored struct {
		m Member
		s float64
	}
	var c []scored
	for _, m := range members {
		if m.Role == RolePS {
			c = append(c, scored{m, score(key, m)})
		}
	}
	sort.Slice(c, func(i, j int) bool {
		if c[i].s != c[j].s {
			return c[i].s > c[j].s
		}
		if c[i].m.ID != c[j].m.ID {
			return c[i].m.ID < c[j].m.ID
		}
		return c[i].m.Addr < c[j].m.Addr
	})
	out := make([]Member, 0, min(r, len(c)))
	for _, x := range c {
		if len(out) == r {
			break
		}
		if len(out) > 0 && slices.ContainsFunc(out, func(m Member) bool { return m.ID == x.m.ID }) {
			continue
		}
		out = append(out, x.m)
	}
	return out
}
