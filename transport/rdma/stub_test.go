//go:build !(rdma && cgo && linux)

package rdma

import (
	"context"
	"errors"
	"testing"
)

func TestStubSaysHowToGetRDMA(t *testing.T) {
	if _, err := NewServer(newFakeService(), DefaultServerConfig()); !errors.Is(err, ErrNoRDMA) {
		t.Fatalf("NewServer = %v, want ErrNoRDMA", err)
	}
	if _, err := NewDialer(DefaultDialerConfig()).Dial(context.Background(), "shm|00"); !errors.Is(err, ErrNoRDMA) {
		t.Fatalf("Dial = %v, want ErrNoRDMA", err)
	}
	if Available() {
		t.Fatal("Available() in a build without the rdma tag")
	}
}
