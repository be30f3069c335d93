// Package ps is the parameter server: variables split into partitions,
// server-side optimizers, the consistency modes (async, sync, bounded
// staleness), the Server that hosts partitions and the Client that Go
// programs use to create, pull and push variables across a cluster.
//
// The Service interface, with its request and response types, is the one
// seam between ps and the transports: ps.Server implements it, transports
// carry its calls between processes, and a Dialer turns an address back into
// a Service. ps knows nothing of wire formats.
//
// A variable is a float32 tensor of rank ≥ 1 split by rows (VariableSpec.
// Partitions); a partition is named by a PartKey and placed on servers by
// rendezvous hashing (package sharding). Errors are the sentinels in
// errors.go, wrapped with context; match them with errors.Is.
package ps
