package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/flowps/flowps/checkpoint"
	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/sharding"
)

// checkpointConfig is psd's checkpoint configuration, from flags.
type checkpointConfig struct {
	// CheckpointDir is --checkpoint-dir; empty after resolve means
	// checkpoints are off.
	CheckpointDir string
	// CheckpointInterval is --checkpoint-interval (0: on demand only).
	CheckpointInterval time.Duration
	// CheckpointKeep is --checkpoint-keep.
	CheckpointKeep int
	// Restore is --restore: "latest", "none" or a checkpoint id.
	Restore string
}

func (c *checkpointConfig) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.CheckpointDir, "checkpoint-dir", "", "directory of cluster checkpoints, shared by every psd of the cluster (default DATA-DIR/checkpoints; empty without --data-dir: checkpoints off)")
	fs.DurationVar(&c.CheckpointInterval, "checkpoint-interval", 0, "take a cluster checkpoint this often (the lowest-id psd coordinates); 0: only on demand (POST /checkpoint, flowctl checkpoint)")
	fs.IntVar(&c.CheckpointKeep, "checkpoint-keep", 3, "complete checkpoints to keep; older ones are deleted (0 keeps all)")
	fs.StringVar(&c.Restore, "restore", "latest", "on start, restore owned partitions from: latest (the newest complete checkpoint), none, or a checkpoint id")
}

func (c *checkpointConfig) resolve(dataDir string) error {
	if c.CheckpointDir == "" && dataDir != "" {
		c.CheckpointDir = filepath.Join(dataDir, "checkpoints")
	}
	if c.CheckpointInterval < 0 {
		return fmt.Errorf("--checkpoint-interval %v: want ≥ 0", c.CheckpointInterval)
	}
	if c.CheckpointInterval > 0 && c.CheckpointDir == "" {
		return fmt.Errorf("--checkpoint-interval needs --checkpoint-dir or --data-dir")
	}
	if c.CheckpointKeep < 0 {
		return fmt.Errorf("--checkpoint-keep %d: want ≥ 0", c.CheckpointKeep)
	}
	if c.Restore == "" {
		c.Restore = "none"
	}
	return nil
}

// checkpointPoll is how often a psd looks for checkpoint requests in the
// checkpoint directory; requestLead is how far ahead of now a coordinator
// sets the snapshot moment, a few polls so every node has seen the
// request by then.
const (
	checkpointPoll = 50 * time.Millisecond
	requestLead    = 250 * time.Millisecond
	// checkpointTimeout bounds a cluster checkpoint: the wait for every
	// node's manifest.
	checkpointTimeout = 2 * time.Minute
	// checkpointAttempts is how often a coordinator retries a checkpoint
	// whose sync variables were caught between two steps.
	checkpointAttempts = 10
	// restoreWindow is how long after start a psd still loads newly placed
	// partitions from the checkpoint (as long as it accepted no push).
	restoreWindow = 10 * time.Minute
)

// checkpointer takes this node's part of cluster checkpoints, coordinates
// them when asked (HTTP, periodic timer), and restores partitions from the
// newest complete checkpoint at start.
//
// Protocol (see docs/checkpoints.md): the coordinator writes
// DIR/<id>/REQUEST.json naming the psd of its view and a snapshot moment;
// every psd polls DIR, and for a request naming it snapshots at that
// moment the partitions it is primary for, writes them and its manifest;
// the coordinator waits for every manifest and calls checkpoint.Finalize,
// which writes the COMPLETE mark.
type checkpointer struct {
	cfg      checkpointConfig
	self     string
	replicas int
	server   *ps.Server
	members  *sharding.Membership
	log      *slog.Logger
	started  time.Time

	coordMu sync.Mutex // one cluster checkpoint at a time from this node
	localMu sync.Mutex // one local write at a time
	handled map[string]bool

	restoreMu sync.Mutex
	restoreCk *checkpoint.Checkpoint
	restored  map[ps.PartKey]bool

	lastPeriodic time.Time
	cancel       context.CancelFunc
	wg           sync.WaitGroup
}

// startCheckpoints opens the checkpoint to restore from (cfg.Restore),
// restores the partitions placement gives this node in the current view,
// and starts the goroutine that restores more as the view grows, answers
// checkpoint requests and takes periodic checkpoints. stop ends it. With
// checkpoints off it returns a checkpointer that only reports so.
func startCheckpoints(ctx context.Context, cfg config, server *ps.Server, members *sharding.Membership) (*checkpointer, error) {
	c := &checkpointer{
		cfg: cfg.checkpointConfig, self: cfg.ID, replicas: cfg.Replicas, server: server, members: members,
		log: cfg.Logger.With("component", "checkpoint"), started: time.Now(),
		handled: map[string]bool{}, restored: map[ps.PartKey]bool{},
	}
	if c.cfg.CheckpointDir == "" {
		return c, nil
	}
	if err := os.MkdirAll(c.cfg.CheckpointDir, 0o755); err != nil {
		return nil, fmt.Errorf("--checkpoint-dir: %w", err)
	}
	switch c.cfg.Restore {
	case "none":
	case "latest":
		ck, err := checkpoint.Latest(c.cfg.CheckpointDir)
		switch {
		case errors.Is(err, checkpoint.ErrNoCheckpoint):
			c.log.Info("no complete checkpoint to restore", "dir", c.cfg.CheckpointDir)
		case err != nil:
			return nil, fmt.Errorf("--restore latest: %w", err)
		default:
			c.restoreCk = ck
		}
	default:
		ck, err := checkpoint.Open(c.cfg.CheckpointDir, c.cfg.Restore)
		if err != nil {
			return nil, fmt.Errorf("--restore %s: %w", c.cfg.Restore, err)
		}
		c.restoreCk = ck
	}
	if c.restoreCk != nil {
		c.log.Info("restoring from checkpoint", "id", c.restoreCk.ID, "variables", len(c.restoreCk.Specs), "partitions", len(c.restoreCk.Parts))
		if err := c.restore(members.View()); err != nil {
			return nil, err
		}
	}
	// Requests written before this node started are not for it.
	if ids, err := checkpoint.List(c.cfg.CheckpointDir); err == nil {
		for _, id := range ids {
			c.handled[id] = true
		}
	}
	c.lastPeriodic = time.Now() // the first periodic checkpoint comes one interval after start
	lctx, cancel := context.WithCancel(ctx)
	c.cancel = cancel
	views, unsubscribe := members.Subscribe()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer unsubscribe()
		c.loop(lctx, views)
	}()
	return c, nil
}

// stop ends the checkpointer's goroutine and waits for it.
func (c *checkpointer) stop() {
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
}

func (c *checkpointer) loop(ctx context.Context, views <-chan sharding.View) {
	tick := time.NewTicker(checkpointPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case v, ok := <-views:
			if !ok {
				views = nil
				continue
			}
			if err := c.restore(v); err != nil {
				c.log.Error("restore from checkpoint", "err", err)
			}
		case <-tick.C:
			c.poll(ctx)
			if c.cfg.CheckpointInterval > 0 && time.Since(c.lastPeriodic) >= c.cfg.CheckpointInterval && c.coordinator() {
				c.lastPeriodic = time.Now()
				c.wg.Add(1)
				go func() {
					defer c.wg.Done()
					if _, err := c.takeCluster(ctx); err != nil && ctx.Err() == nil {
						c.log.Error("periodic checkpoint", "err", err)
					}
				}()
			}
		}
	}
}

// coordinator reports whether this node has the lowest id among the psd
// of its view: the one that takes periodic checkpoints.
func (c *checkpointer) coordinator() bool {
	for _, m := range c.members.View().PS() {
		if m.ID < c.self {
			return false
		}
	}
	return true
}

// poll answers requests that name this node and that it has not handled.
func (c *checkpointer) poll(ctx context.Context) {
	ids, err := checkpoint.List(c.cfg.CheckpointDir)
	if err != nil {
		c.log.Warn("list checkpoints", "err", err)
		return
	}
	for _, id := range ids {
		c.localMu.Lock()
		done := c.handled[id]
		c.localMu.Unlock()
		if done {
			continue
		}
		req, err := checkpoint.ReadRequest(c.cfg.CheckpointDir, id)
		if err != nil {
			continue // not written yet, or not a request; look again later
		}
		if err := c.takeLocal(ctx, req); err != nil {
			c.log.Error("checkpoint", "id", id, "err", err)
		}
	}
}

// takeLocal writes this node's part of checkpoint req.ID once: at req.At,
// a snapshot of every partition it is primary for, the sync-mode ones
// first and all together, so that they are as close in time as possible.
func (c *checkpointer) takeLocal(ctx context.Context, req checkpoint.Request) error {
	c.localMu.Lock()
	defer c.localMu.Unlock()
	if c.handled[req.ID] {
		return nil
	}
	c.handled[req.ID] = true
	if !slices.Contains(req.Nodes, c.self) {
		return nil
	}
	if d := time.Until(req.At); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	start := time.Now()
	members := c.members.View().Members
	primary := func(k ps.PartKey) bool {
		o := sharding.Place(k.String(), members, c.replicas)
		return len(o) > 0 && o[0].ID == c.self
	}
	var syncKeys, otherKeys []ps.PartKey
	for _, st := range c.server.Status() {
		if !primary(st.Key) {
			otherKeys = append(otherKeys, st.Key) // for its spec only
			continue
		}
		if st.Mode == ps.Sync {
			syncKeys = append(syncKeys, st.Key)
		} else {
			otherKeys = append(otherKeys, st.Key)
		}
	}
	var syncStates []*ps.PartitionState
	for _, k := range syncKeys {
		st, err := c.server.Snapshot(k)
		if err != nil {
			return err
		}
		syncStates = append(syncStates, st)
	}
	dir := checkpoint.Dir(c.cfg.CheckpointDir, req.ID)
	m := &checkpoint.NodeManifest{ID: req.ID, Node: c.self, Time: time.Now().UTC(), Parts: []checkpoint.PartEntry{}, Specs: []ps.VariableSpec{}}
	specs := map[string]bool{}
	add := func(st *ps.PartitionState, write bool) error {
		if !specs[st.Spec.Name] {
			specs[st.Spec.Name] = true
			m.Specs = append(m.Specs, st.Spec)
		}
		if !write {
			return nil
		}
		e, err := checkpoint.WritePart(dir, st)
		if err != nil {
			return err
		}
		m.Parts = append(m.Parts, e)
		return nil
	}
	for _, st := range syncStates {
		if err := add(st, true); err != nil {
			return err
		}
	}
	syncStates = nil
	var bytes int64
	for _, k := range otherKeys {
		if err := ctx.Err(); err != nil {
			return err
		}
		st, err := c.server.Snapshot(k)
		if errors.Is(err, ps.ErrUnknownVariable) {
			continue // dropped since Status (migrated away)
		}
		if err != nil {
			return err
		}
		if err := add(st, primary(k)); err != nil {
			return err
		}
	}
	for _, e := range m.Parts {
		bytes += e.Bytes
	}
	if err := checkpoint.WriteManifest(c.cfg.CheckpointDir, m); err != nil {
		return err
	}
	c.log.Info("checkpoint written", "id", req.ID, "partitions", len(m.Parts), "bytes", bytes, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// checkpointResult is what POST /checkpoint answers.
type checkpointResult struct {
	ID         string           `json:"id"`
	Nodes      []string         `json:"nodes"`
	Variables  int              `json:"variables"`
	Partitions int              `json:"partitions"`
	Bytes      int64            `json:"bytes"`
	Steps      map[string]int64 `json:"steps,omitempty"`
	Attempts   int              `json:"attempts"`
	Seconds    float64          `json:"seconds"`
	Pruned     []string         `json:"pruned,omitempty"`
}

// takeCluster coordinates one cluster checkpoint and returns it once
// complete. A checkpoint whose sync variables straddle a step is retried
// with a new id, up to checkpointAttempts times.
func (c *checkpointer) takeCluster(ctx context.Context) (*checkpointResult, error) {
	if c.cfg.CheckpointDir == "" {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "checkpoints are off: start psd with --checkpoint-dir or --data-dir")
	}
	c.coordMu.Lock()
	defer c.coordMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, checkpointTimeout)
	defer cancel()
	start := time.Now()
	var lastErr error
	for attempt := 1; attempt <= checkpointAttempts; attempt++ {
		var nodes []string
		for _, m := range c.members.View().PS() {
			nodes = append(nodes, m.ID)
		}
		now := time.Now()
		req := checkpoint.Request{ID: checkpoint.NewID(now), Time: now.UTC(), By: c.self, Nodes: nodes, At: now.Add(requestLead).UTC()}
		if err := checkpoint.WriteRequest(c.cfg.CheckpointDir, req); err != nil {
			return nil, err
		}
		c.log.Info("checkpoint requested", "id", req.ID, "nodes", nodes, "attempt", attempt)
		if err := c.takeLocal(ctx, req); err != nil {
			return nil, fmt.Errorf("checkpoint %s: %w", req.ID, err)
		}
		if err := c.waitNodes(ctx, req); err != nil {
			return nil, err
		}
		done, err := checkpoint.Finalize(c.cfg.CheckpointDir, req.ID, nodes)
		if errors.Is(err, checkpoint.ErrIncomplete) {
			lastErr = err
			c.log.Warn("checkpoint incomplete; retrying", "id", req.ID, "err", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		res := &checkpointResult{ID: done.ID, Nodes: done.Nodes, Variables: len(done.Specs), Partitions: len(done.Parts),
			Bytes: done.Bytes, Steps: done.Steps, Attempts: attempt, Seconds: time.Since(start).Seconds()}
		if res.Pruned, err = checkpoint.Prune(c.cfg.CheckpointDir, c.cfg.CheckpointKeep); err != nil {
			c.log.Warn("prune checkpoints", "err", err)
		}
		c.log.Info("checkpoint complete", "id", done.ID, "partitions", res.Partitions, "bytes", res.Bytes, "seconds", res.Seconds)
		return res, nil
	}
	return nil, fmt.Errorf("no consistent checkpoint after %d attempts: %w", checkpointAttempts, lastErr)
}

// waitNodes polls until every node of req wrote its manifest.
func (c *checkpointer) waitNodes(ctx context.Context, req checkpoint.Request) error {
	t := time.NewTicker(checkpointPoll / 2)
	defer t.Stop()
	for {
		var missing []string
		for _, n := range req.Nodes {
			if !checkpoint.NodeDone(c.cfg.CheckpointDir, req.ID, n) {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("checkpoint %s: waiting for %v: %w", req.ID, missing, ctx.Err())
		case <-t.C:
		}
	}
}

// restore loads, from the checkpoint opened at start, the partitions
// placement gives this node (as primary or replica) in view v that it has
// not loaded yet. It stops for good once the server accepted a push or
// restoreWindow has passed: from then on partitions move by migration, and
// a checkpoint would be older than what the cluster holds.
func (c *checkpointer) restore(v sharding.View) error {
	c.restoreMu.Lock()
	defer c.restoreMu.Unlock()
	if c.restoreCk == nil {
		return nil
	}
	if c.server.Stats().Pushes > 0 || time.Since(c.started) > restoreWindow {
		c.log.Info("restore window closed", "restored", len(c.restored))
		c.restoreCk = nil
		return nil
	}
	n, start := 0, time.Now()
	for _, e := range c.restoreCk.Parts {
		if c.restored[e.Key] {
			continue
		}
		placed := false
		for _, m := range sharding.Place(e.Key.String(), v.Members, c.replicas) {
			placed = placed || m.ID == c.self
		}
		if !placed {
			continue
		}
		st, err := c.restoreCk.ReadPart(e.Key)
		if err != nil {
			return fmt.Errorf("restore %s from checkpoint %s: %w", e.Key, c.restoreCk.ID, err)
		}
		if err := c.server.Restore(st); err != nil {
			return fmt.Errorf("restore %s from checkpoint %s: %w", e.Key, c.restoreCk.ID, err)
		}
		c.restored[e.Key] = true
		n++
	}
	if n > 0 {
		c.log.Info("restored partitions", "checkpoint", c.restoreCk.ID, "partitions", n, "total", len(c.restored), "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// routes adds the checkpoint endpoints to h:
//
//	POST /checkpoint              take a cluster checkpoint now; answers when complete
//	GET  /checkpoints             list checkpoints (id, complete)
//	GET  /checkpoints/{id}/npz    export checkpoint id ("latest" for the newest) as .npz
func (c *checkpointer) routes(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("POST /checkpoint", func(w http.ResponseWriter, r *http.Request) {
		res, err := c.takeCluster(r.Context())
		if err != nil {
			httpError(w, err)
			return
		}
		writeJSONResponse(w, res)
	})
	mux.HandleFunc("GET /checkpoints", func(w http.ResponseWriter, r *http.Request) {
		type item struct {
			ID       string `json:"id"`
			Complete bool   `json:"complete"`
		}
		out := []item{}
		if c.cfg.CheckpointDir != "" {
			ids, err := checkpoint.List(c.cfg.CheckpointDir)
			if err != nil {
				httpError(w, err)
				return
			}
			for _, id := range ids {
				_, err := checkpoint.Open(c.cfg.CheckpointDir, id)
				out = append(out, item{ID: id, Complete: err == nil})
			}
		}
		writeJSONResponse(w, out)
	})
	mux.HandleFunc("GET /checkpoints/{id}/npz", func(w http.ResponseWriter, r *http.Request) {
		if c.cfg.CheckpointDir == "" {
			httpError(w, ps.Errorf(ps.ErrInvalidArgument, "checkpoints are off"))
			return
		}
		var ck *checkpoint.Checkpoint
		var err error
		if id := r.PathValue("id"); id == "latest" {
			ck, err = checkpoint.Latest(c.cfg.CheckpointDir)
		} else {
			ck, err = checkpoint.Open(c.cfg.CheckpointDir, id)
		}
		if err != nil {
			httpError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/zip")
		w.Header().Set("Content-Disposition", `attachment; filename="flowps-`+ck.ID+`.npz"`)
		if err := ck.ExportNPZ(w); err != nil {
			c.log.Error("export npz", "id", ck.ID, "err", err)
		}
	})
	return mux
}

func writeJSONResponse(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// httpError answers err with a status that fits its sentinel.
func httpError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ps.ErrInvalidArgument):
		code = http.StatusBadRequest
	case errors.Is(err, checkpoint.ErrNoCheckpoint), errors.Is(err, checkpoint.ErrIncomplete), errors.Is(err, fs.ErrNotExist):
		code = http.StatusNotFound
	case errors.Is(err, context.DeadlineExceeded):
		code = http.StatusGatewayTimeout
	}
	http.Error(w, err.Error(), code)
}
