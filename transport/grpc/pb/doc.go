// Package pb holds the protobuf messages and gRPC service descriptors of
// flowps's gRPC transport, generated from flowps.proto. Do not edit the
// generated files; change flowps.proto and run `go generate` in this
// directory (see gen.sh for the pinned plugin versions).
//
// Most programs use package grpctransport (transport/grpc) instead, which
// maps these messages to and from the types of package ps and carries
// tensor bytes without copying them through these structs.
package pb

//go:generate ./gen.sh
