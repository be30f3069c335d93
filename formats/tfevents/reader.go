package tfevents

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/flowps/flowps/formats/tfrecord"
)

// Reader reads the Events of an event file. It remembers the plugin named by
// the first value of each tag and fills it into later values of that tag
// that carry no metadata, as TensorBoard does; a tensor value whose tag was
// first seen with another plugin is then not taken for a scalar. It is not
// safe for concurrent use.
type Reader struct {
	r       *tfrecord.Reader
	plugins map[string]string
	name    string
}

// NewReader returns a Reader of the event records in r.
func NewReader(r io.Reader) (*Reader, error) {
	return newReader(r, "")
}

func newReader(r io.Reader, name string) (*Reader, error) {
	rr, err := tfrecord.NewReaderOptions(r, tfrecord.ReaderOptions{Name: name})
	if err != nil {
		return nil, err
	}
	return &Reader{r: rr, plugins: map[string]string{}, name: name}, nil
}

// Next returns the next Event, or io.EOF after the last. Errors name the
// record index.
func (r *Reader) Next() (*Event, error) {
	idx := r.r.Index()
	rec, err := r.r.Next()
	if err != nil {
		return nil, err
	}
	ev, err := DecodeEvent(rec)
	if err != nil {
		where := fmt.Sprintf("record %d", idx)
		if r.name != "" {
			where = r.name + ": " + where
		}
		return nil, fmt.Errorf("tfevents: %s: %w", where, err)
	}
	for i := range ev.Values {
		v := &ev.Values[i]
		if v.Plugin != "" {
			if _, seen := r.plugins[v.Tag]; !seen {
				r.plugins[v.Tag] = v.Plugin
			}
			continue
		}
		if p, ok := r.plugins[v.Tag]; ok {
			v.Plugin = p
			if v.Kind == KindTensor && p != ScalarsPlugin {
				v.Kind, v.Scalar = KindOther, 0
			}
		}
	}
	return ev, nil
}

// ReadFile reads every Event of the event file at path.
func ReadFile(path string) ([]*Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tfevents: %w", err)
	}
	defer f.Close()
	r, err := newReader(f, path)
	if err != nil {
		return nil, err
	}
	var evs []*Event
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return evs, nil
		}
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
}

// Files returns the event files in dir (names containing "tfevents"), sorted
// by name, which orders them by creation time.
func Files(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("tfevents: %w", err)
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() && strings.Contains(e.Name(), "tfevents") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// Point is one sample of a scalar series.
type Point struct {
	Step     int64
	WallTime float64
	Value    float64
}

// Scalars groups the scalar values of events by tag, in event order.
func Scalars(events []*Event) map[string][]Point {
	out := map[string][]Point{}
	for _, ev := range events {
		for _, v := range ev.Values {
			if v.IsScalar() {
				out[v.Tag] = append(out[v.Tag], Point{Step: ev.Step, WallTime: ev.WallTime, Value: v.Scalar})
			}
		}
	}
	return out
}
