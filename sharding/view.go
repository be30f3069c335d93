package sharding

// View is one epoch of the cluster's membership: the alive members, sorted
// by ID. Views with the same members yield the same placement on every node.
// A View is plain data; its methods do not modify it.
type View struct {
	// Epoch counts the view changes this node has seen. Epochs are local to
	// a node: two nodes may number the same member set differently.
	Epoch uint64
	// Members are the alive members, sorted by ID.
	Members []Member
}

// PS returns the parameter-server members of the view, in view order.
func (v View) PS() []Member {
	var out []Member
	for _, m := range v.Members {
		if m.Role == RolePS {
			out = append(out, m)
		}
	}
	return out
}

// Owners returns the up to r parameter servers that hold key in this view,
// primary first (see Place).
func (v View) Owners(key string, r int) []Member {
	return Place(key, v.Members, r)
}

// Lookup returns the member with the given ID.
func (v View) Lookup(id string) (Member, bool) {
	for _, m := range v.Members {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}
