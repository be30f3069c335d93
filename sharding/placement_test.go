package sharding

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// partKeys returns n partition keys shaped like real ones ("var/index").
func partKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("layer%d/kernel/%d", i%10, i/10)
	}
	return keys
}

func servers(n int, capacity func(i int) float64) []Member {
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{ID: fmt.Sprintf("ps-%d", i), Role: RolePS, Capacity: capacity(i)}
	}
	return ms
}

func ids(ms []Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// TestPlaceBalanceEqualCapacity: over 1,000 keys every server's primary load
// is within ±15% of the mean, for 3..10 servers. The keys are fixed, so this
// is deterministic; note that any per-key hash placement is a multinomial
// draw, and at 10 servers one standard deviation is already ≈9.5% of the
// mean, so ±15% holds for this key set, not for every key set.
func TestPlaceBalanceEqualCapacity(t *testing.T) {
	keys := partKeys(1000)
	for n := 3; n <= 10; n++ {
		ms := servers(n, func(int) float64 { return 1 })
		load := map[string]int{}
		for _, k := range keys {
			load[Place(k, ms, 1)[0].ID]++
		}
		mean := float64(len(keys)) / float64(n)
		for _, m := range ms {
			if dev := (float64(load[m.ID]) - mean) / mean; math.Abs(dev) > 0.15 {
				t.Errorf("%d servers: %s holds %d keys, mean %.1f (%.1f%%)", n, m.ID, load[m.ID], mean, 100*dev)
			}
		}
	}
}

// TestPlaceBalanceStatistical checks the hash is uniform beyond one key set:
// a chi-square test of 20,000 random keys over 8 servers (7 degrees of
// freedom; 24.3 is the 0.001 critical value).
func TestPlaceBalanceStatistical(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ms := servers(8, func(int) float64 { return 1 })
	load := map[string]int{}
	const keys = 20000
	for range keys {
		load[Place(fmt.Sprintf("v%x/%d", rng.Uint64(), rng.IntN(100)), ms, 1)[0].ID]++
	}
	exp := float64(keys) / 8
	chi := 0.0
	for _, m := range ms {
		d := float64(load[m.ID]) - exp
		chi += d * d / exp
	}
	if chi > 24.3 {
		t.Errorf("chi-square %.1f > 24.3: loads %v", chi, load)
	}
}

// TestPlaceWeighted: with capacities alternating 1 and 2, each server's load
// is within ±20% of capacity × (keys / total capacity). The tolerance is
// wider than for equal weights because capacity-1 servers hold fewer keys,
// so their relative noise is larger (σ ≈ 10% at 8 servers).
func TestPlaceWeighted(t *testing.T) {
	keys := partKeys(1000)
	for n := 2; n <= 8; n++ {
		ms := servers(n, func(i int) float64 { return float64(1 + i%2) })
		total := 0.0
		for _, m := range ms {
			total += m.Capacity
		}
		load := map[string]int{}
		for _, k := range keys {
			load[Place(k, ms, 1)[0].ID]++
		}
		for _, m := range ms {
			want := float64(len(keys)) * m.Capacity / total
			if dev := (float64(load[m.ID]) - want) / want; math.Abs(dev) > 0.20 {
				t.Errorf("%d servers: %s (capacity %v) holds %d keys, want %.0f (%.1f%%)", n, m.ID, m.Capacity, load[m.ID], want, 100*dev)
			}
		}
		// The capacity-2 servers together hold about twice what the
		// capacity-1 servers hold, per unit.
		var l1, l2, c1, c2 float64
		for _, m := range ms {
			if m.Capacity == 1 {
				l1, c1 = l1+float64(load[m.ID]), c1+1
			} else {
				l2, c2 = l2+float64(load[m.ID]), c2+2
			}
		}
		if ratio := (l2 / c2) / (l1 / c1); math.Abs(ratio-1) > 0.15 {
			t.Errorf("%d servers: load per unit of capacity: cap-2 / cap-1 = %.2f, want 1 ± 0.15", n, ratio)
		}
	}
}

// TestPlaceMinimalMovement: when a server joins or leaves, only keys whose
// owner set (before a leave, after a join) includes it change owners, and
// every other key keeps the same ordered owner list.
func TestPlaceMinimalMovement(t *testing.T) {
	keys := partKeys(1000)
	for _, r := range []int{1, 2, 3} {
		for n := 3; n <= 10; n++ {
			all := servers(n+1, func(i int) float64 { return float64(1 + i%3) })
			before, extra := all[:n], all[n]
			after := all // extra joins
			moved := 0
			for _, k := range keys {
				b, a := ids(Place(k, before, r)), ids(Place(k, after, r))
				if slices.Contains(a, extra.ID) {
					moved++
					// The others keep their relative order.
					rest := slices.DeleteFunc(slices.Clone(a), func(s string) bool { return s == extra.ID })
					if !slices.Equal(rest, b[:len(rest)]) {
						t.Errorf("r=%d n=%d key %s: owners %v then %v: survivors reordered", r, n, k, b, a)
					}
					continue
				}
				if !slices.Equal(a, b) {
					t.Errorf("r=%d n=%d key %s: owners %v then %v although %s is not among them", r, n, k, b, a, extra.ID)
				}
			}
			if moved == 0 {
				t.Errorf("r=%d n=%d: joining server got no keys", r, n)
			}
			// Leave: a server leaves the n+1 set (the reverse direction,
			// with a server in the middle of the slice this time).
			gone := all[n/2]
			rest := slices.Delete(slices.Clone(all), n/2, n/2+1)
			for _, k := range keys {
				b, a := ids(Place(k, all, r)), ids(Place(k, rest, r))
				if !slices.Contains(b, gone.ID) && !slices.Equal(a, b) {
					t.Errorf("r=%d leave %s key %s: owners %v then %v", r, gone.ID, k, b, a)
				}
			}
		}
	}
}

// TestPlaceOrderIndependent: shuffling the members does not change the
// owners, and non-PS members are ignored.
func TestPlaceOrderIndependent(t *testing.T) {
	ms := servers(7, func(i int) float64 { return float64(i%3) + 0.5 })
	ms = append(ms, Member{ID: "trainer-0", Role: RoleTrainer}, Member{ID: "trainer-1", Role: RoleTrainer})
	rng := rand.New(rand.NewPCG(3, 4))
	keys := partKeys(300)
	want := make([][]string, len(keys))
	for i, k := range keys {
		want[i] = ids(Place(k, ms, 3))
		for _, id := range want[i] {
			if id == "trainer-0" || id == "trainer-1" {
				t.Fatalf("key %s placed on trainer %s", k, id)
			}
		}
	}
	for range 20 {
		sh := slices.Clone(ms)
		rng.Shuffle(len(sh), func(i, j int) { sh[i], sh[j] = sh[j], sh[i] })
		for i, k := range keys {
			if got := ids(Place(k, sh, 3)); !slices.Equal(got, want[i]) {
				t.Fatalf("key %s: %v with order %v, %v before", k, got, ids(sh), want[i])
			}
		}
	}
}

func TestPlaceEdgeCases(t *testing.T) {
	ms := servers(3, func(int) float64 { return 1 })
	if got := Place("k", ms, 0); got != nil {
		t.Errorf("r=0: %v, want nil", got)
	}
	if got := Place("k", ms, -1); got != nil {
		t.Errorf("r=-1: %v, want nil", got)
	}
	if got := Place("k", nil, 2); len(got) != 0 {
		t.Errorf("no members: %v", got)
	}
	if got := Place("k", ms, 5); len(got) != 3 {
		t.Errorf("r > servers: %d owners, want 3", len(got))
	}
	// Duplicated IDs are placed once.
	dup := append(slices.Clone(ms), ms...)
	if got := ids(Place("k", dup, 3)); len(got) != 3 || got[0] == got[1] || got[1] == got[2] || got[0] == got[2] {
		t.Errorf("duplicates: %v", got)
	}
	// A bad capacity from a peer counts as 1 instead of breaking the order.
	bad := servers(4, func(int) float64 { return 1 })
	bad[1].Capacity = math.NaN()
	bad[2].Capacity = math.Inf(1)
	for _, k := range partKeys(100) {
		if a, b := ids(Place(k, bad, 4)), ids(Place(k, servers(4, func(int) float64 { return 1 }), 4)); !slices.Equal(a, b) {
			t.Fatalf("key %s: NaN/Inf capacity gives %v, capacity 1 gives %v", k, a, b)
		}
	}
}

func TestViewHelpers(t *testing.T) {
	v := View{Epoch: 3, Members: []Member{
		{ID: "a", Role: RolePS}, {ID: "b", Role: RoleTrainer}, {ID: "c", Role: RolePS, Capacity: 2},
	}}
	if got := ids(v.PS()); !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("PS() = %v", got)
	}
	if m, ok := v.Lookup("b"); !ok || m.Role != RoleTrainer {
		t.Errorf("Lookup(b) = %v, %v", m, ok)
	}
	if _, ok := v.Lookup("zz"); ok {
		t.Error("Lookup(zz) found a member")
	}
	for _, k := range partKeys(50) {
		if a, b := ids(v.Owners(k, 2)), ids(Place(k, v.PS(), 2)); !slices.Equal(a, b) {
			t.Errorf("Owners(%s) = %v, Place over PS = %v", k, a, b)
		}
	}
}
