// Command flowctl operates a flowps cluster from the command line.
//
//	flowctl checkpoint  --psd HOST:PORT [--tls-cert F --tls-key F --tls-ca F]
//	flowctl checkpoints --psd HOST:PORT
//	flowctl export      --dir CHECKPOINT-DIR [--id ID] --out model.npz
//	flowctl export      --psd HOST:PORT [--id ID] --out model.npz
//	flowctl verify      --dir CHECKPOINT-DIR [--id ID]
//	flowctl gen-certs   --dir DIR [--names psd,trainer]
//	flowctl gossip-key
//
// --psd is the HTTP address of any psd (its --http flag). checkpoint asks
// it to coordinate a cluster checkpoint and waits until it is complete;
// checkpoints lists them; export writes a checkpoint's variables as a
// numpy .npz (from the checkpoint directory, or downloaded from a psd);
// verify reads every partition file of a checkpoint and checks its
// checksums; gen-certs writes a throw-away CA and certificates for
// 127.0.0.1 and localhost (tests and trials only); gossip-key prints a new
// random gossip encryption key.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flowps/flowps/checkpoint"
	"github.com/flowps/flowps/internal/secure"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `flowctl: operate a flowps cluster.

Usage:
  flowctl checkpoint  --psd HOST:PORT [TLS flags]    take a cluster checkpoint now
  flowctl checkpoints --psd HOST:PORT [TLS flags]    list checkpoints
  flowctl export      (--dir DIR | --psd HOST:PORT) [--id ID] --out FILE.npz
  flowctl verify      --dir DIR [--id ID]            check every file of a checkpoint
  flowctl gen-certs   --dir DIR [--names psd,trainer] write a throw-away CA and certificates
  flowctl gossip-key                                 print a random gossip key

Run "flowctl COMMAND --help" for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, args := args[0], args[1:]
	var err error
	switch cmd {
	case "checkpoint":
		err = cmdCheckpoint(ctx, args, stdout, stderr)
	case "checkpoints":
		err = cmdList(ctx, args, stdout, stderr)
	case "export":
		err = cmdExport(ctx, args, stdout, stderr)
	case "verify":
		err = cmdVerify(args, stdout, stderr)
	case "gen-certs":
		err = cmdGenCerts(args, stdout, stderr)
	case "gossip-key":
		err = cmdGossipKey(args, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "flowctl: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "flowctl "+cmd+":", err)
		return 2
	default:
		fmt.Fprintln(stderr, "flowctl "+cmd+":", err)
		return 1
	}
}

var errUsage = errors.New("usage")

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// psdFlags are the flags of commands that talk to a psd over HTTP.
type psdFlags struct {
	addr    string
	files   secure.Files
	timeout time.Duration
}

func (p *psdFlags) add(fs *flag.FlagSet, timeout time.Duration) {
	fs.StringVar(&p.addr, "psd", "", "HTTP `HOST:PORT` of any psd (its --http)")
	fs.StringVar(&p.files.Cert, "tls-cert", "", "client certificate, for a psd run with --http-tls")
	fs.StringVar(&p.files.Key, "tls-key", "", "key of --tls-cert")
	fs.StringVar(&p.files.CA, "tls-ca", "", "CA of the psd's certificate")
	fs.DurationVar(&p.timeout, "timeout", timeout, "how long to wait for the answer")
}

// client returns an HTTP client and the base URL of the psd.
func (p *psdFlags) client() (*http.Client, string, error) {
	if p.addr == "" {
		return nil, "", usageErr("--psd is required")
	}
	tlsCfg, err := secure.ClientTLS(p.files)
	if err != nil {
		return nil, "", err
	}
	if tlsCfg == nil {
		return &http.Client{Timeout: p.timeout}, "http://" + p.addr, nil
	}
	return &http.Client{Timeout: p.timeout, Transport: &http.Transport{TLSClientConfig: tlsCfg}}, "https://" + p.addr, nil
}

func do(ctx context.Context, hc *http.Client, method, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

func parse(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErr("%v", err)
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

func cmdCheckpoint(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("flowctl checkpoint", flag.ContinueOnError)
	var p psdFlags
	p.add(fs, 3*time.Minute)
	asJSON := fs.Bool("json", false, "print the psd's JSON answer")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	hc, base, err := p.client()
	if err != nil {
		return err
	}
	body, err := do(ctx, hc, http.MethodPost, base+"/checkpoint")
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	var res struct {
		ID         string           `json:"id"`
		Nodes      []string         `json:"nodes"`
		Variables  int              `json:"variables"`
		Partitions int              `json:"partitions"`
		Bytes      int64            `json:"bytes"`
		Steps      map[string]int64 `json:"steps"`
		Seconds    float64          `json:"seconds"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	fmt.Fprintf(stdout, "checkpoint %s complete: %d variables, %d partitions, %.1f MB from %s in %.2f s\n",
		res.ID, res.Variables, res.Partitions, float64(res.Bytes)/1e6, strings.Join(res.Nodes, ", "), res.Seconds)
	return nil
}

func cmdList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("flowctl checkpoints", flag.ContinueOnError)
	var p psdFlags
	p.add(fs, 30*time.Second)
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	hc, base, err := p.client()
	if err != nil {
		return err
	}
	body, err := do(ctx, hc, http.MethodGet, base+"/checkpoints")
	if err != nil {
		return err
	}
	var list []struct {
		ID       string `json:"id"`
		Complete bool   `json:"complete"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	for _, c := range list {
		state := "complete"
		if !c.Complete {
			state = "incomplete"
		}
		fmt.Fprintf(stdout, "%s  %s\n", c.ID, state)
	}
	return nil
}

func openCheckpoint(dir, id string) (*checkpoint.Checkpoint, error) {
	if id == "" || id == "latest" {
		return checkpoint.Latest(dir)
	}
	return checkpoint.Open(dir, id)
}

func cmdExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("flowctl export", flag.ContinueOnError)
	var p psdFlags
	p.add(fs, 10*time.Minute)
	dir := fs.String("dir", "", "checkpoint directory (psd's --checkpoint-dir) to read")
	id := fs.String("id", "latest", "checkpoint id, or latest")
	out := fs.String("out", "", "the .npz file to write")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if *out == "" {
		return usageErr("--out is required")
	}
	if (*dir == "") == (p.addr == "") {
		return usageErr("give one of --dir and --psd")
	}
	var data []byte
	name := *id
	if *dir != "" {
		ck, err := openCheckpoint(*dir, *id)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := ck.ExportNPZ(&buf); err != nil {
			return err
		}
		data, name = buf.Bytes(), ck.ID
	} else {
		hc, base, err := p.client()
		if err != nil {
			return err
		}
		if data, err = do(ctx, hc, http.MethodGet, base+"/checkpoints/"+*id+"/npz"); err != nil {
			return err
		}
	}
	if err := checkpoint.WriteFileAtomic(*out, data); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "checkpoint %s: wrote %s (%d bytes)\n", name, *out, len(data))
	return nil
}

func cmdVerify(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("flowctl verify", flag.ContinueOnError)
	dir := fs.String("dir", "", "checkpoint directory (psd's --checkpoint-dir)")
	id := fs.String("id", "latest", "checkpoint id, or latest")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if *dir == "" {
		return usageErr("--dir is required")
	}
	ck, err := openCheckpoint(*dir, *id)
	if err != nil {
		return err
	}
	for _, e := range ck.Parts {
		if _, err := ck.ReadPart(e.Key); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "checkpoint %s: %d variables, %d partitions, %d bytes from %s: every file verified\n",
		ck.ID, len(ck.Specs), len(ck.Parts), ck.Bytes, strings.Join(ck.Nodes, ", "))
	return nil
}

func cmdGenCerts(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("flowctl gen-certs", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory to write ca.pem and NAME.pem, NAME-key.pem into")
	names := fs.String("names", "psd,trainer", "comma-separated certificate names")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if *dir == "" {
		return usageErr("--dir is required")
	}
	// Check every name before writing anything.
	var list []string
	for _, n := range strings.Split(*names, ",") {
		n = strings.TrimSpace(n)
		if n == "" || n != filepath.Base(n) || strings.HasPrefix(n, ".") {
			return usageErr("bad certificate name %q", n)
		}
		list = append(list, n)
	}
	p, err := secure.NewPKI(*dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "CA: %s (valid 24 h; for tests and trials, not production)\n", p.CA)
	for _, n := range list {
		f, err := p.Issue(n)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: --tls-cert %s --tls-key %s --tls-ca %s\n", n, f.Cert, f.Key, f.CA)
	}
	return nil
}

func cmdGossipKey(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("flowctl gossip-key", flag.ContinueOnError)
	size := fs.Int("bytes", 32, "key size: 16, 24 or 32 bytes (AES-128, -192, -256)")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if *size != 16 && *size != 24 && *size != 32 {
		return usageErr("--bytes %d: want 16, 24 or 32", *size)
	}
	k := make([]byte, *size)
	if _, err := rand.Read(k); err != nil {
		return err
	}
	fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(k))
	return nil
}
