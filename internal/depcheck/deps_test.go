// Package depcheck holds a test that keeps the package dependencies pointing
// the way docs/ARCHITECTURE.md says, so nobody has to remember it.
package depcheck

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/flowps/flowps/"

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// rules: a package (prefix) must not depend (transitively) on any of the
// forbidden prefixes.
var rules = []struct {
	pkg       string
	forbidden []string
	why       string
}{
	{mod + "runtime", []string{mod + "ps", mod + "sharding", mod + "transport", "google.golang.org/grpc", "github.com/hashicorp/memberlist"},
		"the runtime reaches variables through its own VarStore interface, never a transport or gossip"},
	{mod + "ps", []string{mod + "transport", mod + "runtime", "google.golang.org/grpc"},
		"ps knows no wire formats: transports carry ps.Service, not the other way round"},
	{mod + "sharding", []string{mod + "ps", mod + "transport", mod + "runtime"},
		"sharding knows nothing of tensors' contents"},
	{mod + "transport", []string{mod + "runtime", mod + "models", mod + "cmd"},
		"transports carry calls; they know nothing of graphs or models"},
	{mod + "formats", []string{mod + "ps", mod + "transport", mod + "runtime"},
		"file formats are leaves"},
}

func TestDependenciesPointDown(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps=false", "-json", "github.com/flowps/flowps/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			if p.ImportPath != r.pkg && !strings.HasPrefix(p.ImportPath, r.pkg+"/") {
				continue
			}
			checked++
			for _, d := range p.Deps {
				for _, f := range r.forbidden {
					if d == f || strings.HasPrefix(d, f+"/") {
						t.Errorf("%s depends on %s: %s", p.ImportPath, d, r.why)
					}
				}
			}
		}
	}
	if checked < 5 {
		t.Fatalf("checked only %d packages: is the module path right?", checked)
	}
}
