package sharding

import (
	"math"
	"net"
	"testing"

	"github.com/hashicorp/memberlist"
)

// FuzzDecodeNode feeds arbitrary gossip metadata (what any peer may
// announce) to decodeNode: it must accept or reject without panicking, and
// what it accepts must be a valid member that placement can score and that
// encodes back within the metadata limit.
func FuzzDecodeNode(f *testing.F) {
	good, err := encodeMember(Member{ID: "ps-1", Role: RolePS, Addr: "127.0.0.1:7000", Host: "h", Capacity: 2})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("ps-1", good)
	f.Add("ps-1", []byte(`{"id":"ps-1","role":"ps","capacity":1e309}`))
	f.Add("t", []byte(`{"id":"t","role":"trainer","capacity":-1}`))
	f.Fuzz(func(t *testing.T, name string, meta []byte) {
		m, err := decodeNode(&memberlist.Node{Name: name, Addr: net.IPv4(127, 0, 0, 1), Port: 7946, Meta: meta})
		if err != nil {
			return
		}
		if m.ID != name {
			t.Fatalf("accepted metadata naming %q for node %q", m.ID, name)
		}
		if w := m.weight(); !(w > 0) || math.IsInf(w, 0) {
			t.Fatalf("weight %v for capacity %v", w, m.Capacity)
		}
		Place("v/0", []Member{m}, 1)
	})
}
