package sharding

import "errors"

// Sentinel errors of package sharding. Errors returned by this package wrap
// one of them with context (the address, the seed, the size), so callers
// test them with errors.Is.
//
// Package ps imports sharding (for RowRange and Place), so sharding cannot
// wrap ps's sentinels without an import cycle; these are its own. ErrClosed
// mirrors ps.ErrClosed in meaning.
var (
	// ErrInvalidConfig reports a MembershipConfig or Member that cannot be
	// used: an empty ID, an unknown role or profile, a malformed address,
	// a gossip key of the wrong length.
	ErrInvalidConfig = errors.New("sharding: invalid config")
	// ErrMetaTooLarge reports a Member whose JSON encoding exceeds
	// memberlist's node metadata limit (MaxMetaSize bytes).
	ErrMetaTooLarge = errors.New("sharding: member metadata too large")
	// ErrBind reports that the gossip address could not be bound (for
	// example because the port is in use).
	ErrBind = errors.New("sharding: cannot bind gossip address")
	// ErrJoin reports that no seed answered before the context ended.
	ErrJoin = errors.New("sharding: join failed")
	// ErrClosed reports a call on a Membership after Shutdown.
	ErrClosed = errors.New("sharding: membership closed")
)
