package grpctransport

import (
	"context"
	"testing"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/transport/transporttest"
)

// TestReuseGradientAfterPush reuses one gradient buffer across pushes, as
// the runtime's executor does: once Push returns, the transport must no
// longer read it (the race detector watches).
func TestReuseGradientAfterPush(t *testing.T) {
	var sum float32
	fake := &transporttest.Fake{PushFunc: func(_ context.Context, r *ps.PushRequest) (*ps.PushResponse, error) {
		return &ps.PushResponse{Versions: []int64{int64(r.Parts[0].Grad[len(r.Parts[0].Grad)-1])}}, nil
	}}
	addr, _ := serve(t, fake, ServerConfig{})
	d := NewDialer(DialerConfig{ChunkBytes: 64 << 10})
	defer d.Close()
	svc, _ := d.Dial(context.Background(), addr)
	g := make([]float32, 1<<18)
	for i := 0; i < 30; i++ {
		for j := range g {
			g[j] = float32(i)
		}
		resp, err := svc.Push(context.Background(), &ps.PushRequest{Parts: []ps.PushPart{{Grad: g}}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Versions[0] != int64(i) {
			t.Fatalf("push %d: server saw %d", i, resp.Versions[0])
		}
		sum += g[0]
	}
	_ = sum
}
