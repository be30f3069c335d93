// Package sharding splits variables into row partitions (SplitRows), places
// partitions on parameter servers by weighted rendezvous hashing (Place), and
// tracks cluster membership by gossip over hashicorp/memberlist
// (Membership, View).
//
// # Partitioning
//
// SplitRows cuts a variable's rows into contiguous ranges whose byte sizes
// lie within [minBytes, maxBytes], as few as the maximum allows:
//
//	parts := sharding.SplitRows(rows, 4*rowElems, 256<<10, 16<<20)
//	// parts[i] is the half-open row range [Start, End) of partition i.
//
// # Placement
//
// Place is a pure function of a partition key and a member set: every node
// that sees the same members computes the same owners, in any order, so no
// master is needed. Each parameter server wins a key with probability
// proportional to its Capacity; the first owner is the primary, the next r-1
// its replicas. When a server joins or leaves, only keys whose owner set
// includes that server move; every other key keeps its ordered owner list.
//
//	owners := sharding.Place("dense1/kernel/3", members, 2) // primary, replica
//
// Placement balance is statistical: with 1,000 keys over 10 equal servers
// one standard deviation is about 9.5% of the mean load.
//
// # Membership
//
// Every psd and trainer runs one Membership. Its member record (ID, role,
// endpoints, capacity) travels as gossip node metadata, at most MaxMetaSize
// (512) bytes of JSON. A typical life:
//
//	m, err := sharding.NewMembership(sharding.MembershipConfig{
//		Self:     sharding.Member{ID: "ps-1", Role: sharding.RolePS, Addr: "10.0.0.1:7000"},
//		BindAddr: "0.0.0.0:7946",
//		Seeds:    []string{"10.0.0.2:7946"},
//	})
//	if err != nil { ... }              // ErrBind names a port in use
//	defer m.Shutdown()
//	if _, err := m.Join(ctx, nil); err != nil { ... } // retries until ctx ends
//	views, cancel := m.Subscribe()
//	defer cancel()
//	for v := range views {             // newest view; stale ones are skipped
//		primary := v.Owners(key.String(), 1)
//		...
//	}
//	// later: m.UpdateSelf(ctx, withFabricEndpoint); m.Leave(ctx); m.Shutdown()
//
// Members and View return the alive members sorted by ID, this node
// included; Epoch counts view changes seen by this node (epochs are local,
// not a cluster-wide clock). Leave makes others drop the node within about
// one gossip round; Shutdown without Leave is seen as a crash and detected
// by the failure detector (about 1 s with ProfileLocal, 6 s with ProfileLAN
// in a 3-node cluster). With SecretKey set, gossip is encrypted and nodes
// without the key cannot join: their Join fails with ErrJoin.
//
// Errors wrap the sentinels in errors.go. Package sharding knows nothing of
// tensors' contents; package ps depends on it, never the reverse.
package sharding
