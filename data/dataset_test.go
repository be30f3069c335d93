package data

import (
	"slices"
	"testing"
)

func TestShardCovers(t *testing.T) {
	d, _, err := Synthetic(SyntheticConfig{Train: 103, Shape: []int{3}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []int{1, 2, 3, 7} {
		total := 0
		for r := range w {
			s, err := d.Shard(r, w)
			if err != nil {
				t.Fatal(err)
			}
			if s.N() < d.N()/w || s.N() > d.N()/w+1 {
				t.Errorf("w=%d r=%d: %d examples", w, r, s.N())
			}
			if !slices.Equal(s.X, d.X[total*3:(total+s.N())*3]) {
				t.Errorf("w=%d r=%d: not the contiguous slice at %d", w, r, total)
			}
			total += s.N()
		}
		if total != d.N() {
			t.Errorf("w=%d: shards hold %d of %d", w, total, d.N())
		}
	}
	if _, err := d.Shard(2, 2); err == nil {
		t.Error("rank 2 of 2 accepted")
	}
}

// TestSamplerMatchesCombinedBatch checks the property sync training relies
// on: W workers' batches t together are exactly one worker's batch t at
// W×batch, and within an epoch the workers' shares are disjoint.
func TestSamplerMatchesCombinedBatch(t *testing.T) {
	const n, b, w = 1003, 8, 4
	one, err := NewSampler(n, w*b, 0, 1, 42)
	if err != nil {
		t.Fatal(err)
	}
	for e := range 3 {
		big := one.Epoch(e)
		if len(big) != n/(w*b) {
			t.Fatalf("%d steps", len(big))
		}
		seen := map[int]bool{}
		parts := make([][][]int, w)
		for r := range w {
			s, err := NewSampler(n, b, r, w, 42)
			if err != nil {
				t.Fatal(err)
			}
			parts[r] = s.Epoch(e)
			if len(parts[r]) != len(big) {
				t.Fatalf("rank %d: %d steps, want %d", r, len(parts[r]), len(big))
			}
		}
		for step := range big {
			var union []int
			for r := range w {
				for _, i := range parts[r][step] {
					if seen[i] {
						t.Fatalf("epoch %d: example %d dealt twice", e, i)
					}
					seen[i] = true
				}
				union = append(union, parts[r][step]...)
			}
			got, want := slices.Sorted(slices.Values(union)), slices.Sorted(slices.Values(big[step]))
			if !slices.Equal(got, want) {
				t.Fatalf("epoch %d step %d: workers' union differs from the combined batch", e, step)
			}
		}
	}
	a, b2 := one.Epoch(0), one.Epoch(1)
	if slices.Equal(a[0], b2[0]) {
		t.Error("epochs 0 and 1 have the same first batch")
	}
	again, _ := NewSampler(n, w*b, 0, 1, 42)
	if !slices.Equal(again.Epoch(1)[3], b2[3]) {
		t.Error("same seed, different batches")
	}
}

func TestSamplerArgs(t *testing.T) {
	for _, c := range []struct{ n, b, r, w int }{{10, 0, 0, 1}, {10, 3, 1, 1}, {10, 3, 0, 4}, {10, 3, -1, 2}, {10, 3, 0, 0}} {
		if _, err := NewSampler(c.n, c.b, c.r, c.w, 0); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestGatherAndSynthetic(t *testing.T) {
	train, test, err := Synthetic(SyntheticConfig{Train: 50, Test: 20, Shape: []int{2, 2}, Classes: 5, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := train.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := test.Validate(); err != nil {
		t.Fatal(err)
	}
	var counts [5]int
	for _, l := range train.Labels {
		counts[l]++
	}
	if counts != [5]int{10, 10, 10, 10, 10} {
		t.Errorf("labels not balanced: %v", counts)
	}
	x, y := train.Gather([]int{3, 1}, nil, nil)
	if !slices.Equal(x[:4], train.X[12:16]) || !slices.Equal(x[4:], train.X[4:8]) || y[0] != train.Labels[3] || y[1] != train.Labels[1] {
		t.Error("gather copied the wrong rows")
	}
	x2, _ := train.Gather([]int{0}, x, y)
	if &x2[0] != &x[0] {
		t.Error("gather did not reuse the buffer")
	}
	again, _, _ := Synthetic(SyntheticConfig{Train: 50, Test: 20, Shape: []int{2, 2}, Classes: 5, Seed: 7})
	if !slices.Equal(again.X, train.X) {
		t.Error("same seed, different data")
	}
	if _, _, err := Synthetic(SyntheticConfig{Train: 0}); err == nil {
		t.Error("empty synthetic set accepted")
	}
}
