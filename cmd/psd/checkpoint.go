package main

import (
	"flag"
	"fmt"
	"path/filepath"
	"time"
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
