#!/bin/sh
# Regenerates flowps.pb.go and flowps_grpc.pb.go from flowps.proto.
#
# Needs protoc from Debian's protobuf-compiler (3.21) and the two Go plugins
# at the pinned versions below:
#
#   apt-get install protobuf-compiler
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
#
# Run from anywhere: go generate ./transport/grpc/pb
# OUT=dir writes the generated files there instead (gen_test.go uses it to
# check that the committed files are current).
set -eu
OUT="${OUT:-.}"
cd "$(dirname "$0")"
PATH="$(go env GOPATH)/bin:$PATH"
want_go="protoc-gen-go v1.36.12"
want_grpc="protoc-gen-go-grpc 1.5.1"
got_go="$(protoc-gen-go --version)"
got_grpc="$(protoc-gen-go-grpc --version)"
[ "$got_go" = "$want_go" ] || { echo "gen.sh: have $got_go, want $want_go" >&2; exit 1; }
[ "$got_grpc" = "$want_grpc" ] || { echo "gen.sh: have $got_grpc, want $want_grpc" >&2; exit 1; }
protoc --proto_path=. \
	--go_out="$OUT" --go_opt=paths=source_relative \
	--go-grpc_out="$OUT" --go-grpc_opt=paths=source_relative \
	flowps.proto
