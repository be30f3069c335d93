package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/flowps/flowps/transport/rdma"
)

func itoa(i int) string { return strconv.Itoa(i) }

// doctor implements `psd doctor`: it prints everything the automatic
// transport selection checks (RDMA devices and ports, link layer and state,
// character devices, libfabric version and providers, the locked-memory
// limit) and what it would choose for a peer, and why.
func doctor(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("psd doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	peer := fs.String("peer", "", "host or IP of a peer to check the route and RDMA device for")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: psd doctor [--peer HOST] [--json]\n\nPrints the RDMA transport check and the transport auto-selection would pick.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := rdma.Doctor(ctx, *peer)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(r)
		return 0
	}
	fmt.Fprint(stdout, r.String())
	return 0
}
