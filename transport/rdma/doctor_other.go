//go:build !linux

package rdma

import (
	"context"
	"errors"
	"runtime"
)

var errNotLinux = errors.New("RDMA discovery needs Linux, this is " + runtime.GOOS)

func rdmaDevices() []Device { return nil }

func rdmaDeviceFor(netdev string) (string, error) { return "", errNotLinux }

func routeTo(ctx context.Context, host string) (ip, netdev string, err error) {
	return "", "", errNotLinux
}
