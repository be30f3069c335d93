package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowps/flowps/internal/clustertest"
)

// TestTrainingSurvivesPsdKill: 3 psd with r = 2 and 2 trainers in sync mode
// on MNIST; one psd is SIGKILLed mid-epoch; training finishes with test
// accuracy within 0.005 of an undisturbed run on a fresh cluster.
func TestTrainingSurvivesPsdKill(t *testing.T) {
	skipShort(t)
	undisturbed := trainSyncPair(t, false)
	disturbed := trainSyncPair(t, true)
	for r := range disturbed {
		t.Logf("rank %d: test accuracy undisturbed %.4f (%d steps), with a psd killed %.4f (%d steps)",
			r, undisturbed[r].TestAccuracy, undisturbed[r].Steps, disturbed[r].TestAccuracy, disturbed[r].Steps)
		if d := disturbed[r].TestAccuracy - undisturbed[r].TestAccuracy; d > 0.005 || d < -0.005 {
			t.Errorf("rank %d: accuracy %.4f with a psd killed, %.4f undisturbed: differ by more than 0.005",
				r, disturbed[r].TestAccuracy, undisturbed[r].TestAccuracy)
		}
		if disturbed[r].Steps != undisturbed[r].Steps {
			t.Errorf("rank %d: %d steps with a psd killed, %d undisturbed", r, disturbed[r].Steps, undisturbed[r].Steps)
		}
	}
	if undisturbed[0].TestAccuracy < 0.9 {
		t.Errorf("undisturbed run reached only %.4f: the comparison means little", undisturbed[0].TestAccuracy)
	}
}

// trainSyncPair starts 3 psd (r = 2) and 2 sync trainers for one epoch of
// the MNIST MLP; with kill, it SIGKILLs a psd once training is a third
// through. It returns both trainers' results.
func trainSyncPair(t *testing.T, kill bool) [2]*trainerResult {
	t.Helper()
	c := clustertest.New(t, "--replicas", "2")
	c.Start(3)
	bin := filepath.Join(clustertest.Binaries(t), "trainer")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	var (
		wg   sync.WaitGroup
		res  [2]*trainerResult
		errs [2]error
	)
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[r], _, errs[r] = runTrainer(ctx, bin, nil, "--join", strings.Join(c.GossipSeeds(), ","), "--model", "mlp", "--data", "mnist",
				"--mode", "sync", "--workers", "2", "--rank", fmt.Sprint(r), "--epochs", "1", "--batch", "64",
				"--lr", "0.1", "--optimizer", "sgd", "--seed", "1", "--progress", "60")
		}()
	}
	if kill {
		// One epoch is 468 steps; kill once a partition passed step 150.
		victim := c.Nodes[1]
		clustertest.WaitFor(t, 3*time.Minute, "training to pass step 150", func() error {
			st, err := c.Nodes[0].Status()
			if err != nil {
				return err
			}
			for _, p := range st.Partitions {
				if p.Version >= 150 {
					return nil
				}
			}
			return fmt.Errorf("no partition at step 150 yet")
		})
		victim.Kill()
		t.Logf("killed %s mid-epoch", victim.ID)
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("trainer %d: %v", r, err)
		}
	}
	return res
}
