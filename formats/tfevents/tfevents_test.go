package tfevents

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/flowps/flowps/formats/tfrecord"
	"google.golang.org/protobuf/encoding/protowire"
)

const lingvo = "../../testdata/lingvo_events.out.tfevents.test"

var lingvoTags = []string{
	"bleu/dev", "bleu/split:dev", "brevity_penalty/dev", "brevity_penalty/split:dev",
	"log_perplexity/dev", "log_perplexity/split:dev", "runtime/sentence/sec",
}

func TestReadLingvoEvents(t *testing.T) {
	evs, err := ReadFile(lingvo)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 361 {
		t.Fatalf("%d events, want 361", len(evs))
	}
	if evs[0].FileVersion != FileVersion || evs[0].HasSummary || evs[0].WallTime < 1e9 {
		t.Fatalf("record 0: %+v", evs[0])
	}
	prev := int64(0)
	for i, ev := range evs[1:] {
		if ev.FileVersion != "" || !ev.HasSummary {
			t.Fatalf("event %d: %+v", i+1, ev)
		}
		if ev.Step <= prev {
			t.Errorf("event %d: step %d after %d", i+1, ev.Step, prev)
		}
		prev = ev.Step
		var tags []string
		for _, v := range ev.Values {
			if v.Kind != KindSimple {
				t.Errorf("event %d %s: kind %v", i+1, v.Tag, v.Kind)
			}
			tags = append(tags, v.Tag)
		}
		sort.Strings(tags)
		if !reflect.DeepEqual(tags, lingvoTags) {
			t.Fatalf("event %d tags %v", i+1, tags)
		}
	}
	if evs[1].Step != 1500 || evs[360].Step != 185200 {
		t.Errorf("steps %d..%d, want 1500..185200", evs[1].Step, evs[360].Step)
	}
	sc := Scalars(evs)
	if len(sc) != 7 {
		t.Fatalf("%d series", len(sc))
	}
	for tag, pts := range sc {
		if len(pts) != 360 {
			t.Errorf("%s: %d points", tag, len(pts))
		}
	}
	// Sanity of the values: BLEU is a fraction, the brevity penalty at most
	// 1, and perplexity decreases over training.
	for _, p := range sc["bleu/dev"] {
		if p.Value < 0 || p.Value > 1 {
			t.Fatalf("bleu/dev at %d = %v", p.Step, p.Value)
		}
	}
	for _, p := range sc["brevity_penalty/dev"] {
		if p.Value <= 0 || p.Value > 1 {
			t.Fatalf("brevity_penalty/dev at %d = %v", p.Step, p.Value)
		}
	}
	// Values pinned from the file; the split:dev series repeat the dev ones,
	// and BLEU improves over training.
	if b := sc["bleu/dev"]; b[0].Step != 1500 || b[0].Value != 0.11201018840074539 || b[359].Value != 0.2852171063423157 {
		t.Errorf("bleu/dev first %+v last %+v", b[0], b[359])
	}
	if r := sc["runtime/sentence/sec"]; r[0].Value != 8.118837356567383 || r[359].Step != 185200 || r[359].Value != 10.830163955688477 {
		t.Errorf("runtime/sentence/sec first %+v last %+v", r[0], r[359])
	}
	for i, p := range sc["bleu/dev"] {
		if q := sc["bleu/split:dev"][i]; q != p {
			t.Fatalf("bleu/split:dev %+v differs from bleu/dev %+v", q, p)
		}
	}
	if w := evs[1].WallTime; w < 1.534577086e9 || w > 1.534577087e9 {
		t.Errorf("wall time of step 1500: %v", w)
	}
	// Re-encoding reproduces TensorFlow's bytes for every event.
	recs, err := tfrecord.ReadAll(lingvo)
	if err != nil {
		t.Fatal(err)
	}
	for i, rec := range recs {
		if got := evs[i].AppendEncode(nil); !bytes.Equal(got, rec) {
			t.Fatalf("event %d re-encodes differently:\n got %x\nwant %x", i, got, rec)
		}
	}
}

var nameRE = regexp.MustCompile(`^events\.out\.tfevents\.(\d{10})\.testhost\.(\d+)\.(\d+)\.r1$`)

func TestWriterRoundTrip(t *testing.T) {
	for _, tensor := range []bool{false, true} {
		t.Run(fmt.Sprintf("tensor=%v", tensor), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "logs")
			now := time.Unix(1700000000, 250_000_000)
			w, err := NewWriter(dir, WriterOptions{Host: "testhost", Suffix: ".r1", TensorForm: tensor, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			m := nameRE.FindStringSubmatch(filepath.Base(w.Path()))
			if m == nil || m[1] != "1700000000" || m[2] != fmt.Sprint(os.Getpid()) {
				t.Fatalf("file name %s", w.Path())
			}
			for step := int64(1); step <= 3; step++ {
				if err := w.Scalar("loss/train", step, 1/float32(step)); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Scalars(3, map[string]float32{"accuracy/test": 0.75, "lr": 0.1}); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := w.Scalar("x", 1, 1); !errors.Is(err, ErrClosed) {
				t.Errorf("write after close: %v", err)
			}
			files, err := Files(dir)
			if err != nil || len(files) != 1 || files[0] != w.Path() {
				t.Fatalf("Files: %v %v", files, err)
			}
			evs, err := ReadFile(w.Path())
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 5 || evs[0].FileVersion != FileVersion || evs[0].WallTime != 1700000000.25 {
				t.Fatalf("events %+v", evs[0])
			}
			want := KindSimple
			if tensor {
				want = KindTensor
			}
			sc := Scalars(evs)
			if len(sc["loss/train"]) != 3 || sc["loss/train"][1].Value != float64(float32(0.5)) || sc["loss/train"][2].Step != 3 {
				t.Errorf("loss/train %v", sc["loss/train"])
			}
			if p := sc["accuracy/test"]; len(p) != 1 || p[0].Value != 0.75 || p[0].Step != 3 {
				t.Errorf("accuracy/test %v", p)
			}
			if p := sc["lr"]; len(p) != 1 || p[0].Value != float64(float32(0.1)) {
				t.Errorf("lr %v", p)
			}
			for _, ev := range evs[1:] {
				for _, v := range ev.Values {
					if v.Kind != want {
						t.Errorf("%s kind %v, want %v", v.Tag, v.Kind, want)
					}
					if tensor && v.Plugin != ScalarsPlugin {
						t.Errorf("%s plugin %q", v.Tag, v.Plugin)
					}
				}
			}
		})
	}
}

func TestWriterFlushInterval(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	now := time.Unix(1700000000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	w, err := NewWriter(dir, WriterOptions{FlushInterval: time.Minute, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	count := func() int {
		evs, err := ReadFile(w.Path())
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}
	if n := count(); n != 1 {
		t.Fatalf("file_version event not flushed at once: %d events", n)
	}
	w.Scalar("a", 1, 1)
	if n := count(); n != 1 {
		t.Fatalf("event flushed before the interval: %d events", n)
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	w.Scalar("a", 2, 2)
	if n := count(); n != 3 {
		t.Fatalf("after the interval: %d events, want 3", n)
	}
	w.Scalar("a", 3, 3)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 4 {
		t.Fatalf("after Flush: %d events", n)
	}
}

func TestWriterConcurrent(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(dir, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A second writer in the same second gets another file.
	w2, err := NewWriter(dir, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w2.Close()
	if w2.Path() == w.Path() {
		t.Fatal("two writers share a file")
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if err := w.Scalar(fmt.Sprintf("g%d", g), int64(i), float32(i)); err != nil {
					t.Error(err)
					return
				}
				if i%25 == 0 {
					w.Flush()
				}
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	evs, err := ReadFile(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	sc := Scalars(evs)
	for g := 0; g < 4; g++ {
		pts := sc[fmt.Sprintf("g%d", g)]
		if len(pts) != 100 {
			t.Fatalf("g%d: %d points", g, len(pts))
		}
		for i, p := range pts {
			if p.Step != int64(i) || p.Value != float64(i) {
				t.Fatalf("g%d point %d = %+v", g, i, p)
			}
		}
	}
}

// tensorValue builds a Summary.Value the way TF2's C++ summary writer does:
// a DT_FLOAT (or other) tensor with the number in tensor_content.
func tensorValue(tag, plugin string, dtype uint64, dims []uint64, content []byte) []byte {
	var t []byte
	t = protowire.AppendVarint(protowire.AppendTag(t, tensorDtype, protowire.VarintType), dtype)
	var shape []byte
	for _, d := range dims {
		dim := protowire.AppendVarint(protowire.AppendTag(nil, dimSize, protowire.VarintType), d)
		shape = protowire.AppendBytes(protowire.AppendTag(shape, shapeDim, protowire.BytesType), dim)
	}
	t = protowire.AppendBytes(protowire.AppendTag(t, tensorShape, protowire.BytesType), shape)
	t = protowire.AppendBytes(protowire.AppendTag(t, tensorContent, protowire.BytesType), content)
	var v []byte
	v = protowire.AppendString(protowire.AppendTag(v, valTag, protowire.BytesType), tag)
	if plugin != "" {
		pd := protowire.AppendString(protowire.AppendTag(nil, pluginName, protowire.BytesType), plugin)
		meta := protowire.AppendBytes(protowire.AppendTag(nil, metaPluginData, protowire.BytesType), pd)
		v = protowire.AppendBytes(protowire.AppendTag(v, valMetadata, protowire.BytesType), meta)
	}
	v = protowire.AppendBytes(protowire.AppendTag(v, valTensor, protowire.BytesType), t)
	return v
}

func event(step int64, values ...[]byte) []byte {
	var sum []byte
	for _, v := range values {
		sum = protowire.AppendBytes(protowire.AppendTag(sum, sumValue, protowire.BytesType), v)
	}
	var b []byte
	b = protowire.AppendFixed64(protowire.AppendTag(b, evWallTime, protowire.Fixed64Type), math.Float64bits(1.5))
	b = protowire.AppendVarint(protowire.AppendTag(b, evStep, protowire.VarintType), uint64(step))
	return protowire.AppendBytes(protowire.AppendTag(b, evSummary, protowire.BytesType), sum)
}

func f32(x float32) []byte { return binary.LittleEndian.AppendUint32(nil, math.Float32bits(x)) }

func TestReadTF2TensorForm(t *testing.T) {
	var buf bytes.Buffer
	w, _ := tfrecord.NewWriter(&buf, tfrecord.WriterOptions{})
	w.Write((&Event{WallTime: 1, FileVersion: FileVersion}).AppendEncode(nil))
	w.Write(event(1,
		tensorValue("loss", "scalars", dtFloat, nil, f32(2.5)),
		tensorValue("hist", "histograms", dtFloat, []uint64{1}, f32(9)),
		tensorValue("d", "scalars", dtDouble, nil, binary.LittleEndian.AppendUint64(nil, math.Float64bits(0.125))),
		tensorValue("vec", "scalars", dtFloat, []uint64{2}, append(f32(1), f32(2)...)),
		tensorValue("text", "text", 7, nil, []byte("hi")),
	))
	// Later values without metadata, as TF1-style writers strip it.
	w.Write(event(2,
		tensorValue("loss", "", dtFloat, nil, f32(1.25)),
		tensorValue("hist", "", dtFloat, []uint64{1, 1}, f32(8)),
	))
	w.Close()
	r, err := NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var evs []*Event
	for {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	type kv struct {
		kind   ValueKind
		v      float64
		plugin string
	}
	got := map[string]kv{}
	for _, ev := range evs[1:] {
		for _, v := range ev.Values {
			got[fmt.Sprint(ev.Step, v.Tag)] = kv{v.Kind, v.Scalar, v.Plugin}
		}
	}
	want := map[string]kv{
		"1loss": {KindTensor, 2.5, "scalars"},
		"1hist": {KindOther, 0, "histograms"},
		"1d":    {KindTensor, 0.125, "scalars"},
		"1vec":  {KindOther, 0, "scalars"},
		"1text": {KindOther, 0, "text"},
		"2loss": {KindTensor, 1.25, "scalars"},
		"2hist": {KindOther, 0, "histograms"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	if sc := Scalars(evs); len(sc) != 2 || len(sc["loss"]) != 2 || sc["loss"][1].Step != 2 {
		t.Errorf("Scalars %v", sc)
	}
}

func TestDecodeErrors(t *testing.T) {
	b := event(3, tensorValue("loss", "scalars", dtFloat, nil, f32(1)))
	for cut := 1; cut < len(b); cut++ {
		if _, err := DecodeEvent(b[:cut]); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("cut %d: %v", cut, err)
		}
	}
	// A cut inside the summary is always an error.
	if _, err := DecodeEvent(b[:len(b)-3]); !errors.Is(err, ErrMalformed) {
		t.Errorf("cut summary: %v", err)
	}
	// A corrupt event inside a valid record names the record.
	var buf bytes.Buffer
	w, _ := tfrecord.NewWriter(&buf, tfrecord.WriterOptions{})
	w.Write((&Event{WallTime: 1, FileVersion: FileVersion}).AppendEncode(nil))
	w.Write(b[:len(b)-3])
	w.Close()
	r, _ := NewReader(&buf)
	r.Next()
	if _, err := r.Next(); !errors.Is(err, ErrMalformed) || !regexp.MustCompile(`record 1`).MatchString(err.Error()) {
		t.Errorf("got %v", err)
	}
}

func FuzzDecodeEvent(f *testing.F) {
	recs, err := tfrecord.ReadAll(lingvo)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(recs[0])
	f.Add(recs[1])
	f.Add(event(7, tensorValue("loss", "scalars", dtFloat, nil, f32(1))))
	f.Add((&Event{Step: 3, Values: []Value{{Tag: "t", Kind: KindTensor, Scalar: 2}}}).AppendEncode(nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		ev, err := DecodeEvent(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		back, err := DecodeEvent(ev.AppendEncode(nil))
		if err != nil {
			t.Fatalf("re-encoded event does not decode: %v", err)
		}
		if back.Step != ev.Step || math.Float64bits(back.WallTime) != math.Float64bits(ev.WallTime) ||
			back.FileVersion != ev.FileVersion || len(back.Values) != len(ev.Values) {
			t.Fatalf("round trip: %+v vs %+v", back, ev)
		}
		for i, v := range ev.Values {
			b := back.Values[i]
			if b.Tag != v.Tag || b.IsScalar() != v.IsScalar() {
				t.Fatalf("value %d: %+v vs %+v", i, b, v)
			}
			if v.Kind == KindSimple && math.Float32bits(float32(b.Scalar)) != math.Float32bits(float32(v.Scalar)) {
				t.Fatalf("value %d: %v vs %v", i, b.Scalar, v.Scalar)
			}
		}
	})
}
