package checkpoint

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/flowps/flowps/ps"
)

// File names inside a checkpoint directory.
const (
	RequestFile  = "REQUEST.json"
	CompleteFile = "COMPLETE.json"
	nodePrefix   = "node-"
)

// ErrIncomplete marks a checkpoint that lacks partitions, files or the
// COMPLETE mark, or whose sync variables are not at one version.
var ErrIncomplete = errors.New("checkpoint: incomplete")

// ErrNoCheckpoint means the root holds no complete checkpoint.
var ErrNoCheckpoint = errors.New("checkpoint: none complete")

// NewID returns the id of a checkpoint requested at t: its UTC time with
// nanoseconds, which sorts as it ages.
func NewID(t time.Time) string { return t.UTC().Format("20060102T150405.000000000Z") }

// ValidID reports whether id has NewID's form, so that it can name a
// directory safely.
func ValidID(id string) bool {
	_, err := time.Parse("20060102T150405.000000000Z", id)
	return err == nil && len(id) == len("20060102T150405.000000000Z")
}

// Request is what a coordinator asks every psd to do: write its partitions
// into checkpoint ID. Nodes lists the psd expected to answer.
type Request struct {
	ID    string    `json:"id"`
	Time  time.Time `json:"time"`
	By    string    `json:"by"`
	Nodes []string  `json:"nodes"`
	// At is when every node should snapshot its partitions: a moment far
	// enough ahead that each has seen the request, so that snapshots are
	// taken at nearly the same instant (sync variables then likely sit at
	// one step on every node; Finalize checks it).
	At time.Time `json:"at"`
}

// NodeManifest lists what one psd wrote into a checkpoint: the specs of
// the variables it holds partitions of and one entry per partition file.
type NodeManifest struct {
	ID    string            `json:"id"`
	Node  string            `json:"node"`
	Time  time.Time         `json:"time"`
	Specs []ps.VariableSpec `json:"specs"`
	Parts []PartEntry       `json:"parts"`
}

// Complete is the mark of a complete checkpoint, written last by the
// coordinator: every partition of every variable, where to find it, and in
// sync mode the one version of each variable.
type Complete struct {
	ID    string            `json:"id"`
	Time  time.Time         `json:"time"`
	Nodes []string          `json:"nodes"`
	Specs []ps.VariableSpec `json:"specs"`
	Parts []PartEntry       `json:"parts"`
	// Steps holds, for each sync-mode variable, the version all its
	// partitions are at.
	Steps map[string]int64 `json:"steps,omitempty"`
	// Bytes is the total size of the partition files.
	Bytes int64 `json:"bytes"`
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(b, '\n'))
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return ps.Errorf(ps.ErrInvalidArgument, "%s: %v", path, err)
	}
	return nil
}

// Dir is the directory of checkpoint id under root.
func Dir(root, id string) string { return filepath.Join(root, id) }

// WriteRequest creates checkpoint r.ID's directory and its request.
func WriteRequest(root string, r Request) error {
	if !ValidID(r.ID) {
		return ps.Errorf(ps.ErrInvalidArgument, "checkpoint id %q", r.ID)
	}
	if err := os.MkdirAll(Dir(root, r.ID), 0o755); err != nil {
		return err
	}
	if err := syncDir(root); err != nil {
		return err
	}
	return writeJSON(filepath.Join(Dir(root, r.ID), RequestFile), r)
}

// ReadRequest reads checkpoint id's request.
func ReadRequest(root, id string) (Request, error) {
	var r Request
	err := readJSON(filepath.Join(Dir(root, id), RequestFile), &r)
	return r, err
}

// WriteNode writes the partitions in parts into checkpoint id (whose
// directory must exist) and then node's manifest. specs lists every
// variable the node hosts any partition of (as primary or replica), so
// that Finalize notices a partition nobody wrote even when it was the only
// one a node wrote of its variable; the specs of parts are added to it.
func WriteNode(root, id, node string, specs []ps.VariableSpec, parts []*ps.PartitionState) (*NodeManifest, error) {
	dir := Dir(root, id)
	m := &NodeManifest{ID: id, Node: node, Time: time.Now().UTC(), Parts: []PartEntry{}, Specs: []ps.VariableSpec{}}
	seen := map[string]bool{}
	addSpec := func(s ps.VariableSpec) {
		if !seen[s.Name] {
			seen[s.Name] = true
			m.Specs = append(m.Specs, s)
		}
	}
	for _, s := range specs {
		addSpec(s)
	}
	for _, st := range parts {
		e, err := WritePart(dir, st)
		if err != nil {
			return nil, fmt.Errorf("checkpoint %s: %w", id, err)
		}
		m.Parts = append(m.Parts, e)
		addSpec(st.Spec)
	}
	if err := WriteManifest(root, m); err != nil {
		return nil, err
	}
	return m, nil
}

// WriteManifest writes node manifest m into its checkpoint, atomically;
// write it after the partition files it lists.
func WriteManifest(root string, m *NodeManifest) error {
	if !ValidID(m.ID) {
		return ps.Errorf(ps.ErrInvalidArgument, "checkpoint id %q", m.ID)
	}
	if err := writeJSON(filepath.Join(Dir(root, m.ID), nodePrefix+escapeName(m.Node)+".json"), m); err != nil {
		return fmt.Errorf("checkpoint %s: %w", m.ID, err)
	}
	return nil
}

// NodeDone reports whether node's manifest is in checkpoint id.
func NodeDone(root, id, node string) bool {
	_, err := os.Stat(filepath.Join(Dir(root, id), nodePrefix+escapeName(node)+".json"))
	return err == nil
}

// readNodes reads every node manifest of checkpoint id.
func readNodes(root, id string) ([]*NodeManifest, error) {
	dir := Dir(root, id)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []*NodeManifest
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), nodePrefix) || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		m := new(NodeManifest)
		if err := readJSON(filepath.Join(dir, e.Name()), m); err != nil {
			return nil, err
		}
		if m.ID != id {
			return nil, ps.Errorf(ps.ErrInvalidArgument, "%s belongs to checkpoint %s", e.Name(), m.ID)
		}
		out = append(out, m)
	}
	return out, nil
}

// Finalize checks checkpoint id: a manifest from every node in nodes;
// specs that agree; every partition of every variable present exactly
// once (when two nodes wrote one partition, the higher version wins), its
// file there with the size the manifest gives; every sync variable's
// partitions at one version. It then writes the COMPLETE mark. An
// unmet condition is an error wrapping ErrIncomplete.
func Finalize(root, id string, nodes []string) (*Complete, error) {
	ms, err := readNodes(root, id)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", id, err)
	}
	have := map[string]bool{}
	for _, m := range ms {
		have[m.Node] = true
	}
	for _, n := range nodes {
		if !have[n] {
			return nil, fmt.Errorf("%w: checkpoint %s has no manifest from %s", ErrIncomplete, id, n)
		}
	}
	c := &Complete{ID: id, Time: time.Now().UTC(), Steps: map[string]int64{}}
	specs := map[string]ps.VariableSpec{}
	parts := map[ps.PartKey]PartEntry{}
	for _, m := range ms {
		c.Nodes = append(c.Nodes, m.Node)
		for _, s := range m.Specs {
			if old, ok := specs[s.Name]; ok {
				if !sameSpec(old, s) {
					return nil, fmt.Errorf("%w: checkpoint %s: variable %s has two specs", ErrIncomplete, id, s.Name)
				}
				continue
			}
			specs[s.Name] = s
		}
		for _, e := range m.Parts {
			if old, ok := parts[e.Key]; !ok || e.Version > old.Version {
				parts[e.Key] = e
			}
		}
	}
	slices.Sort(c.Nodes)
	for _, s := range specs {
		c.Specs = append(c.Specs, s)
	}
	slices.SortFunc(c.Specs, func(a, b ps.VariableSpec) int { return cmp.Compare(a.Name, b.Name) })
	if err := check(Dir(root, id), c.Specs, parts, c); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", id, err)
	}
	if err := writeJSON(filepath.Join(Dir(root, id), CompleteFile), c); err != nil {
		return nil, err
	}
	return c, nil
}

func sameSpec(a, b ps.VariableSpec) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// check fills c.Parts, c.Steps and c.Bytes from parts, verifying coverage,
// files and sync versions.
func check(dir string, specs []ps.VariableSpec, parts map[ps.PartKey]PartEntry, c *Complete) error {
	c.Parts = c.Parts[:0]
	c.Bytes = 0
	for _, s := range specs {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrIncomplete, err)
		}
		ranges := s.Partitions()
		step := int64(-1)
		for i, r := range ranges {
			k := ps.PartKey{Var: s.Name, Index: i}
			e, ok := parts[k]
			if !ok {
				return fmt.Errorf("%w: partition %s missing", ErrIncomplete, k)
			}
			if e.Rows != r {
				return fmt.Errorf("%w: partition %s has rows %v, the spec gives %v", ErrIncomplete, k, e.Rows, r)
			}
			fi, err := os.Stat(filepath.Join(dir, e.File))
			if err != nil || fi.Size() != e.Bytes || e.File != PartFile(k) {
				return fmt.Errorf("%w: partition %s: file %s missing or of the wrong size", ErrIncomplete, k, e.File)
			}
			if s.Consistency.Mode == ps.Sync {
				if step >= 0 && e.Version != step {
					return fmt.Errorf("%w: sync variable %s has partitions at versions %d and %d", ErrIncomplete, s.Name, step, e.Version)
				}
				step = e.Version
			}
			c.Parts = append(c.Parts, e)
			c.Bytes += e.Bytes
		}
		if s.Consistency.Mode == ps.Sync {
			c.Steps[s.Name] = step
		}
	}
	if len(parts) != len(c.Parts) {
		return fmt.Errorf("%w: %d partition files for variables with %d partitions", ErrIncomplete, len(parts), len(c.Parts))
	}
	return nil
}

// Checkpoint is a complete checkpoint opened for reading.
type Checkpoint struct {
	Root string
	Complete
	byKey map[ps.PartKey]PartEntry
}

// Open opens checkpoint id under root, verifying its COMPLETE mark against
// the files (coverage and sizes; contents are verified by ReadPart).
func Open(root, id string) (*Checkpoint, error) {
	if !ValidID(id) {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "checkpoint id %q", id)
	}
	ck := &Checkpoint{Root: root}
	if err := readJSON(filepath.Join(Dir(root, id), CompleteFile), &ck.Complete); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: checkpoint %s has no %s", ErrIncomplete, id, CompleteFile)
		}
		return nil, err
	}
	if ck.ID != id {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "checkpoint %s: mark names %s", id, ck.ID)
	}
	ck.byKey = map[ps.PartKey]PartEntry{}
	for _, e := range ck.Parts {
		if _, dup := ck.byKey[e.Key]; dup {
			return nil, fmt.Errorf("%w: checkpoint %s lists %s twice", ErrIncomplete, id, e.Key)
		}
		ck.byKey[e.Key] = e
	}
	var again Complete
	again.Steps = map[string]int64{}
	if err := check(Dir(root, id), ck.Specs, ck.byKey, &again); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", id, err)
	}
	return ck, nil
}

// Entry returns the entry of partition k.
func (ck *Checkpoint) Entry(k ps.PartKey) (PartEntry, bool) {
	e, ok := ck.byKey[k]
	return e, ok
}

// ReadPart reads and verifies partition k's state.
func (ck *Checkpoint) ReadPart(k ps.PartKey) (*ps.PartitionState, error) {
	e, ok := ck.byKey[k]
	if !ok {
		return nil, ps.Errorf(ps.ErrUnknownVariable, "checkpoint %s has no partition %s", ck.ID, k)
	}
	return ReadPart(Dir(ck.Root, ck.ID), e)
}

// List returns the ids of the checkpoint directories under root, oldest
// first, complete or not. A missing root has none.
func List(root string) ([]string, error) {
	ents, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && ValidID(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// Latest opens the newest checkpoint under root that opens as complete;
// incomplete or damaged ones are skipped. With none it returns
// ErrNoCheckpoint.
func Latest(root string) (*Checkpoint, error) {
	ids, err := List(root)
	if err != nil {
		return nil, err
	}
	for i := len(ids) - 1; i >= 0; i-- {
		if ck, err := Open(root, ids[i]); err == nil {
			return ck, nil
		}
	}
	return nil, fmt.Errorf("%w under %s", ErrNoCheckpoint, root)
}

// Prune deletes checkpoints older than the newest keep complete ones:
// complete and incomplete alike, but never one newer than the keep-th
// newest complete one (it may be in progress). keep ≤ 0 deletes nothing.
func Prune(root string, keep int) ([]string, error) {
	if keep <= 0 {
		return nil, nil
	}
	ids, err := List(root)
	if err != nil {
		return nil, err
	}
	complete := 0
	cut := -1
	for i := len(ids) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(Dir(root, ids[i]), CompleteFile)); err == nil {
			complete++
			if complete == keep {
				cut = i
				break
			}
		}
	}
	var removed []string
	for i := 0; i < cut; i++ {
		if err := os.RemoveAll(Dir(root, ids[i])); err != nil {
			return removed, err
		}
		removed = append(removed, ids[i])
	}
	return removed, nil
}
