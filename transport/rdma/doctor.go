package rdma

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Port is one port of an RDMA device, as sysfs describes it.
type Port struct {
	Num       string   // "1"
	State     string   // "4: ACTIVE", "1: DOWN", …
	LinkLayer string   // "Ethernet" (RoCE) or "InfiniBand"
	Netdevs   []string // network interfaces on this port (RoCE)
}

// Active reports whether the port is up.
func (p Port) Active() bool { return strings.Contains(p.State, "ACTIVE") }

// Device is one RDMA device with its ports and character devices.
type Device struct {
	Name        string
	Ports       []Port
	CharDevices []string // /dev/infiniband/uverbsN, rdma_cm, …
}

// Report is what Doctor found: enough to say why a peer would or would not
// be reached over RDMA.
type Report struct {
	// Built says whether this binary has the rdma build tag.
	Built            bool
	LibfabricVersion string
	// Providers lists libfabric providers as "name/endpoint-type".
	Providers []string
	// ProviderError is set when libfabric could not list providers.
	ProviderError string
	Devices       []Device
	// Memlock is RLIMIT_MEMLOCK in bytes; MemlockUnlimited when infinite.
	Memlock          uint64
	MemlockUnlimited bool
	// PeerHost, PeerIP and Netdev: the peer asked about, its address and
	// the local interface that routes to it.
	PeerHost string
	PeerIP   string
	Netdev   string
	// RDMADevice is the RDMA device behind Netdev, if any.
	RDMADevice string
	// Choice is "rdma (verbs;ofi_rxm)" or "grpc"; Reason says why.
	Choice string
	Reason string
}

// minMemlock is the smallest memlock limit that holds one default staging
// area pinned by verbs on each side of a connection.
const minMemlock = 2 * 128 << 20

// Doctor checks everything `auto` transport selection checks for a peer
// and says what it would choose and why. peerHost may be empty (only the
// local checks run). It never opens a fabric endpoint: the final one-write
// probe happens when a connection is made.
func Doctor(ctx context.Context, peerHost string) Report {
	r := Report{Built: Available(), PeerHost: peerHost}
	var err error
	r.LibfabricVersion, r.Providers, err = libfabricInfo()
	if err != nil {
		r.ProviderError = err.Error()
	}
	r.Devices = rdmaDevices()
	if lim, unlimited, err := memlockLimit(); err == nil {
		r.Memlock = lim
		r.MemlockUnlimited = unlimited
	}
	if peerHost != "" {
		r.PeerIP, r.Netdev, err = routeTo(ctx, peerHost)
		if err != nil {
			r.Netdev = ""
			r.Reason = err.Error()
		} else if dev, err := rdmaDeviceFor(r.Netdev); err == nil {
			r.RDMADevice = dev
		}
	}
	r.Choice, r.Reason = r.decide(r.Reason)
	return r
}

func (r *Report) decide(routeErr string) (string, string) {
	const grpc = "grpc"
	switch {
	case !r.Built:
		return grpc, ErrNoRDMA.Error()
	case r.ProviderError != "":
		return grpc, "libfabric lists no providers: " + r.ProviderError
	case !r.hasProvider("verbs"):
		if len(r.Devices) == 0 {
			return grpc, "no RDMA devices found (and libfabric has no verbs provider)"
		}
		return grpc, "libfabric has no verbs provider"
	case len(r.Devices) == 0:
		return grpc, "no RDMA devices found"
	case r.PeerHost == "":
		return grpc, "no peer given: RDMA is chosen per peer"
	case routeErr != "":
		return grpc, "no route to the peer: " + routeErr
	case r.RDMADevice == "":
		return grpc, fmt.Sprintf("interface %s that routes to %s has no RDMA device", r.Netdev, r.PeerIP)
	}
	var dev Device
	for _, d := range r.Devices {
		if d.Name == r.RDMADevice {
			dev = d
		}
	}
	var port *Port
	for i, p := range dev.Ports {
		for _, n := range p.Netdevs {
			if n == r.Netdev {
				port = &dev.Ports[i]
			}
		}
	}
	if port == nil && len(dev.Ports) > 0 {
		port = &dev.Ports[0]
	}
	switch {
	case port == nil:
		return grpc, fmt.Sprintf("RDMA device %s has no ports", dev.Name)
	case !port.Active():
		return grpc, fmt.Sprintf("RDMA device %s port %s is %s, not ACTIVE", dev.Name, port.Num, port.State)
	case port.LinkLayer != "Ethernet":
		return grpc, fmt.Sprintf("RDMA device %s port %s link layer is %q, not Ethernet (RoCE)", dev.Name, port.Num, port.LinkLayer)
	case !hasChar(dev.CharDevices, "uverbs"):
		return grpc, fmt.Sprintf("RDMA device %s has no /dev/infiniband/uverbs character device", dev.Name)
	case !hasChar(dev.CharDevices, "rdma_cm"):
		return grpc, "no /dev/infiniband/rdma_cm character device"
	case !r.MemlockUnlimited && r.Memlock < minMemlock:
		return grpc, fmt.Sprintf("memlock limit %d KiB is below the %d KiB verbs needs to pin staging areas (ulimit -l)", r.Memlock>>10, minMemlock>>10)
	}
	return "rdma (" + ProviderVerbs + ")", fmt.Sprintf("device %s port %s is ACTIVE Ethernet behind %s; the one-write probe runs on connect", dev.Name, port.Num, r.Netdev)
}

func (r *Report) hasProvider(name string) bool {
	for _, p := range r.Providers {
		if strings.HasPrefix(p, name+"/") || strings.HasPrefix(p, name+";") {
			return true
		}
	}
	return false
}

func hasChar(devs []string, sub string) bool {
	for _, d := range devs {
		if strings.Contains(filepath.Base(d), sub) {
			if _, err := os.Stat(d); err == nil {
				return true
			}
		}
	}
	return false
}

// String renders the report as `psd doctor` prints it.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rdma support built in: %v\n", r.Built)
	if r.LibfabricVersion != "" {
		fmt.Fprintf(&b, "libfabric: %s\n", r.LibfabricVersion)
	}
	if r.ProviderError != "" {
		fmt.Fprintf(&b, "providers: unavailable (%s)\n", r.ProviderError)
	} else {
		fmt.Fprintf(&b, "providers: %s\n", strings.Join(r.Providers, ", "))
	}
	if len(r.Devices) == 0 {
		b.WriteString("RDMA devices: none (no RDMA devices found)\n")
	}
	for _, d := range r.Devices {
		fmt.Fprintf(&b, "RDMA device %s: char devices %v\n", d.Name, d.CharDevices)
		for _, p := range d.Ports {
			fmt.Fprintf(&b, "  port %s: state %s, link layer %s, netdevs %v\n", p.Num, p.State, p.LinkLayer, p.Netdevs)
		}
	}
	if r.MemlockUnlimited {
		b.WriteString("memlock (ulimit -l): unlimited\n")
	} else {
		fmt.Fprintf(&b, "memlock (ulimit -l): %d KiB\n", r.Memlock>>10)
	}
	if r.PeerHost != "" {
		fmt.Fprintf(&b, "peer %s: ip %s, via interface %q, RDMA device %q\n", r.PeerHost, r.PeerIP, r.Netdev, r.RDMADevice)
	}
	fmt.Fprintf(&b, "choice: %s\nreason: %s\n", r.Choice, r.Reason)
	return b.String()
}
