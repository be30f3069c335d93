package runtime

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestImports keeps the dependency direction: the runtime knows nothing of
// the parameter server, transports, sharding or gossip; it reaches
// variables only through VarStore.
func TestImports(t *testing.T) {
	forbidden := []string{
		"github.com/flowps/flowps/ps", "github.com/flowps/flowps/transport", "github.com/flowps/flowps/sharding",
		"github.com/flowps/flowps/cmd", "github.com/hashicorp/", "google.golang.org/grpc",
	}
	err := filepath.Walk(".", func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			for _, bad := range forbidden {
				if p == bad || strings.HasPrefix(p, bad+"/") || strings.HasSuffix(bad, "/") && strings.HasPrefix(p, bad) {
					t.Errorf("%s imports %s", path, p)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
