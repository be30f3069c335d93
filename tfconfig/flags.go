package tfconfig

import (
	"flag"
	"fmt"
	"sort"
)

// ApplyFlags gives flags their TF_CONFIG-derived values while letting the
// command line win: after fs.Parse, it sets each flag named in values unless
// the flag was set already (by the user, or by fs.Set, which a previous
// ApplyFlags calls). It returns the names it set, sorted.
// A name fs does not define, or a value the flag rejects, is an error
// wrapping ErrInvalid.
//
//	cfg, err := tfconfig.FromEnv()
//	...
//	if cfg != nil {
//		rank, _ := cfg.Rank()
//		_, err = tfconfig.ApplyFlags(fs, map[string]string{
//			"workers": strconv.Itoa(cfg.Workers()), "rank": strconv.Itoa(rank),
//		})
//	}
func ApplyFlags(fs *flag.FlagSet, values map[string]string) ([]string, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	sort.Strings(names)
	var applied []string
	for _, n := range names {
		if fs.Lookup(n) == nil {
			return applied, fmt.Errorf("%w: no flag -%s to take the TF_CONFIG value %q", ErrInvalid, n, values[n])
		}
		if set[n] {
			continue
		}
		if err := fs.Set(n, values[n]); err != nil {
			return applied, fmt.Errorf("%w: -%s from TF_CONFIG: %v", ErrInvalid, n, err)
		}
		applied = append(applied, n)
	}
	return applied, nil
}
