package rdma

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/Mellanox/rdmamap"
	"github.com/vishvananda/netlink"
)

// rdmaDevices lists RDMA devices from sysfs.
func rdmaDevices() []Device {
	var out []Device
	for _, name := range rdmamap.GetRdmaDeviceList() {
		out = append(out, describeDevice(name))
	}
	return out
}

func rdmaDeviceFor(netdev string) (string, error) { return rdmamap.GetRdmaDeviceForNetdevice(netdev) }

func describeDevice(name string) Device {
	d := Device{Name: name, CharDevices: rdmamap.GetRdmaCharDevices(name)}
	for _, p := range rdmamap.GetPorts(name) {
		dir := filepath.Join("/sys/class/infiniband", name, "ports", p)
		port := Port{Num: p, State: readTrim(filepath.Join(dir, "state")), LinkLayer: readTrim(filepath.Join(dir, "link_layer"))}
		if entries, err := os.ReadDir(filepath.Join(dir, "gid_attrs", "ndevs")); err == nil {
			seen := map[string]bool{}
			for _, e := range entries {
				if n := readTrim(filepath.Join(dir, "gid_attrs", "ndevs", e.Name())); n != "" && !seen[n] {
					seen[n] = true
					port.Netdevs = append(port.Netdevs, n)
				}
			}
		}
		d.Ports = append(d.Ports, port)
	}
	return d
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// routeTo resolves host and asks the kernel which interface routes to it.
func routeTo(ctx context.Context, host string) (ip, netdev string, err error) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil || len(addrs) == 0 {
		return "", "", fmt.Errorf("resolve %s: %v", host, err)
	}
	routes, err := netlink.RouteGet(addrs[0].IP)
	if err != nil || len(routes) == 0 {
		return addrs[0].IP.String(), "", fmt.Errorf("route to %s: %v", addrs[0].IP, err)
	}
	link, err := netlink.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return addrs[0].IP.String(), "", fmt.Errorf("interface %d: %v", routes[0].LinkIndex, err)
	}
	return addrs[0].IP.String(), link.Attrs().Name, nil
}
