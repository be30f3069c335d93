package pb

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedCodeIsCurrent regenerates the code with gen.sh into a
// temporary directory and fails if it differs from the committed files. It
// skips when protoc or the pinned plugins are not installed.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		t.Skip("protoc not installed")
	}
	out := t.TempDir()
	cmd := exec.Command("./gen.sh")
	cmd.Env = append(os.Environ(), "OUT="+out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("gen.sh cannot run here (%v): %s", err, msg)
	}
	for _, f := range []string{"flowps.pb.go", "flowps_grpc.pb.go"} {
		want, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run go generate ./transport/grpc/pb", f)
		}
	}
}
