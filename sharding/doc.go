// Package sharding splits variables into row partitions (SplitRows), places
// partitions on parameter servers by weighted rendezvous hashing (Place), and
// tracks cluster membership by gossip over hashicorp/memberlist.
//
// Placement is a pure function of a partition key and the member set: every
// node that sees the same members computes the same owners, so no master is
// needed, and when a server joins or leaves only the partitions whose owner
// set includes that server move. Package sharding knows nothing of tensors'
// contents.
package sharding
