package example

import (
	"bytes"
	"errors"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/flowps/flowps/formats/tfrecord"
	"google.golang.org/protobuf/encoding/protowire"
)

const testdata = "../../testdata/"

func TestSparkRecords(t *testing.T) {
	for _, name := range []string{"ecosystem_hadoop_part-m-00000.tfrecord", "ecosystem_hadoop_part-m-00000.tfrecord.gz"} {
		recs, err := tfrecord.ReadAll(testdata + name)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 5 {
			t.Fatalf("%s: %d records", name, len(recs))
		}
		for i, rec := range recs {
			e, err := Decode(rec)
			if err != nil {
				t.Fatalf("%s record %d: %v", name, i, err)
			}
			if keys := e.Keys(); !reflect.DeepEqual(keys, []string{"data"}) {
				t.Fatalf("record %d keys %v", i, keys)
			}
			v, err := e.Int64s("data")
			if err != nil {
				t.Fatal(err)
			}
			if len(v) != 2 || v[0] != int64(i) {
				t.Errorf("record %d: data %v", i, v)
			}
			switch i {
			case 0:
				if v[1] != -6519408338692630574 {
					t.Errorf("first record %v", v)
				}
			case 4:
				if v[1] != 6197228047171027195 {
					t.Errorf("last record %v", v)
				}
			}
			// The Java writer's encoding is the canonical packed one.
			if got := e.Encode(); !bytes.Equal(got, rec) {
				t.Errorf("record %d: re-encoding differs:\n got %x\nwant %x", i, got, rec)
			}
		}
	}
}

func TestLingvoExamples(t *testing.T) {
	recs, err := tfrecord.ReadAll(testdata + "lingvo_wmt14_ende_wpm_32k_test.tfrecord")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 100 {
		t.Fatalf("%d records, want 100", len(recs))
	}
	kinds := map[string]Kind{
		"example_index": KindInt64, "natural_order": KindInt64, "source_id": KindInt64,
		"target_id": KindInt64, "target_label": KindInt64,
		"source_padding": KindFloat, "target_padding": KindFloat, "target_weight": KindFloat,
		"source_word": KindBytes, "target_word": KindBytes,
	}
	for i, rec := range recs {
		e, err := Decode(rec)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if len(e.Features) != len(kinds) {
			t.Fatalf("record %d: keys %v", i, e.Keys())
		}
		for k, kind := range kinds {
			if e.Features[k].Kind != kind {
				t.Errorf("record %d: %s is %v, want %v", i, k, e.Features[k].Kind, kind)
			}
		}
		idx, _ := e.Int64s("example_index")
		if len(idx) != 1 || idx[0] != int64(i+1) {
			t.Errorf("record %d: example_index %v", i, idx)
		}
		// Per-token features agree in length on each side.
		src, tgt := e.Features["source_id"].Len(), e.Features["target_id"].Len()
		for _, k := range []string{"source_padding", "source_word"} {
			if n := e.Features[k].Len(); n != src {
				t.Errorf("record %d: %s has %d values, source_id %d", i, k, n, src)
			}
		}
		for _, k := range []string{"target_label", "target_padding", "target_weight", "target_word"} {
			if n := e.Features[k].Len(); n != tgt {
				t.Errorf("record %d: %s has %d values, target_id %d", i, k, n, tgt)
			}
		}
		// target_label is target_id shifted by one.
		id, _ := e.Int64s("target_id")
		lab, _ := e.Int64s("target_label")
		if !reflect.DeepEqual(id[1:], lab[:len(lab)-1]) {
			t.Errorf("record %d: target_label is not target_id shifted", i)
		}
		// Semantic round trip.
		back, err := Decode(e.Encode())
		if err != nil || !reflect.DeepEqual(back, e) {
			t.Errorf("record %d: round trip differs (%v)", i, err)
		}
	}
	e, _ := Decode(recs[0])
	words, _ := e.BytesList("source_word")
	if got := string(bytes.Join(words, nil)); got != "▁A▁Republican▁strategy▁to▁counter▁the▁re-election▁of▁Obama</s>" {
		t.Errorf("record 0 source_word %q", got)
	}
	ids, _ := e.Int64s("source_id")
	if !reflect.DeepEqual(ids[:5], []int64{93, 15027, 643, 8, 2985}) {
		t.Errorf("record 0 source_id %v", ids)
	}
	w, _ := e.Floats("target_weight")
	if len(w) != 15 || w[0] != 1 {
		t.Errorf("record 0 target_weight %v", w)
	}
	last, _ := Decode(recs[99])
	tw, _ := last.BytesList("target_word")
	if len(tw) != 24 || string(tw[1]) != "▁Während" {
		t.Errorf("record 99 target_word %q", tw)
	}
}

func TestRoundTrip(t *testing.T) {
	e := New()
	e.Set("img", FloatFeature(0, -1.5, float32(math.Inf(1)), math.SmallestNonzeroFloat32))
	e.Set("label", Int64Feature(7))
	e.Set("ids", Int64Feature(-1, 0, math.MaxInt64, math.MinInt64))
	e.Set("raw", BytesFeature([]byte{}, []byte("x\x00y")))
	e.Set("empty_f", FloatFeature())
	e.Set("empty_b", BytesFeature())
	e.Set("none", Feature{})
	e.Set("", Int64Feature(1))
	b := e.Encode()
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	// Decoding yields nil for empty lists; compare by content.
	for _, k := range e.Keys() {
		w, g := e.Features[k], got.Features[k]
		if w.Kind != g.Kind || w.Len() != g.Len() {
			t.Errorf("%q: got %+v want %+v", k, g, w)
		}
	}
	if !reflect.DeepEqual(got.Features["ids"], e.Features["ids"]) || !reflect.DeepEqual(got.Features["raw"].Bytes[1], []byte("x\x00y")) {
		t.Errorf("values differ: %+v", got.Features)
	}
	if !bytes.Equal(got.Encode(), b) {
		t.Errorf("encoding not stable")
	}
	if len((&Example{}).Encode()) != 0 {
		t.Errorf("empty example encodes to bytes")
	}
	if _, err := got.Floats("label"); !errors.Is(err, ErrFeature) {
		t.Errorf("wrong kind: %v", err)
	}
	if _, err := got.Int64s("nope"); !errors.Is(err, ErrFeature) || !strings.Contains(err.Error(), `"nope" missing`) {
		t.Errorf("missing: %v", err)
	}
}

// Hand-built encodings: unpacked lists, merged duplicates, unknown fields.
func TestDecodeWireVariants(t *testing.T) {
	msg := func(num protowire.Number, parts ...[]byte) []byte {
		b := protowire.AppendTag(nil, num, protowire.BytesType)
		return protowire.AppendBytes(b, bytes.Join(parts, nil))
	}
	varint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
	fixed := func(num protowire.Number, v float32) []byte {
		return protowire.AppendFixed32(protowire.AppendTag(nil, num, protowire.Fixed32Type), math.Float32bits(v))
	}
	str := func(num protowire.Number, s string) []byte { return msg(num, []byte(s)) }
	entry := func(key string, feature []byte) []byte {
		return msg(fieldFeaturesFeature, str(fieldMapKey, key), msg(fieldMapValue, feature))
	}
	unknown := varint(15, 99)
	rec := bytes.Join([][]byte{
		msg(fieldExampleFeatures,
			entry("f", msg(fieldFloatList, fixed(1, 1.5), fixed(1, 2.5), unknown)),
			entry("i", msg(fieldInt64List, varint(1, 3), unknown, varint(1, uint64(1<<64-2)))),
			entry("dup", msg(fieldInt64List, varint(1, 1))),
			unknown,
		),
		unknown,
		// The features message again: merged; "dup" replaced, "f" replaced
		// (a map entry replaces), "m" merged across two Feature fields.
		msg(fieldExampleFeatures,
			entry("dup", msg(fieldBytesList, str(1, "b"))),
			msg(fieldFeaturesFeature, str(fieldMapKey, "m"),
				msg(fieldMapValue, msg(fieldInt64List, varint(1, 1)), msg(fieldInt64List, varint(1, 2)))),
			msg(fieldFeaturesFeature, str(fieldMapKey, "o"),
				msg(fieldMapValue, msg(fieldInt64List, varint(1, 1)), msg(fieldFloatList, fixed(1, 9)))),
		),
	}, nil)
	e, err := Decode(rec)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Feature{
		"f":   FloatFeature(1.5, 2.5),
		"i":   Int64Feature(3, -2),
		"dup": BytesFeature([]byte("b")),
		"m":   Int64Feature(1, 2),
		"o":   FloatFeature(9),
	}
	if !reflect.DeepEqual(e.Features, want) {
		t.Errorf("got %+v\nwant %+v", e.Features, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	good := New()
	good.Set("x", FloatFeature(1, 2))
	good.Set("y", Int64Feature(300))
	b := good.Encode()
	for cut := 1; cut < len(b); cut++ {
		if _, err := Decode(b[:cut]); err == nil {
			t.Errorf("cut at %d of %d accepted", cut, len(b))
		} else if !errors.Is(err, ErrMalformed) {
			t.Errorf("cut at %d: %v does not wrap ErrMalformed", cut, err)
		}
	}
	// A packed float list whose length is not a multiple of 4.
	bad := protowire.AppendTag(nil, 1, protowire.BytesType)
	bad = protowire.AppendBytes(bad, []byte{1, 2, 3})
	f := Feature{Kind: KindFloat}
	if err := decodeList(bad, &f); !errors.Is(err, ErrMalformed) {
		t.Errorf("packed floats of 3 bytes: %v", err)
	}
	// Invalid UTF-8 feature name.
	e := New()
	e.Set("\xff", Int64Feature(1))
	if _, err := Decode(e.Encode()); !errors.Is(err, ErrMalformed) {
		t.Errorf("non-UTF-8 key: %v", err)
	}
}

func TestWriteImagesReadDense(t *testing.T) {
	const n, dim = 37, 784
	x := make([]float32, n*dim)
	labels := make([]int32, n)
	for i := range labels {
		labels[i] = int32(i % 10)
		for j := 0; j < dim; j++ {
			x[i*dim+j] = float32((i*31+j*7)%256) / 255
		}
	}
	dir := t.TempDir()
	for _, c := range []struct {
		name   string
		format ImageFormat
		comp   tfrecord.Compression
	}{{"float", FloatImage, tfrecord.None}, {"bytes.gz", BytesImage, tfrecord.Gzip}} {
		path := filepath.Join(dir, "mnist-"+c.name)
		w, err := tfrecord.Create(path, tfrecord.WriterOptions{Compression: c.comp})
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteImages(w, x, labels, dim, ImageOptions{Format: c.format}); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		d, err := ReadDense(path, DenseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d.N() != n || d.Dim != dim || d.Classes() != 10 {
			t.Fatalf("%s: N %d Dim %d Classes %d", c.name, d.N(), d.Dim, d.Classes())
		}
		for i := range labels {
			if d.Labels[i] != int64(labels[i]) {
				t.Fatalf("%s: label %d = %d", c.name, i, d.Labels[i])
			}
		}
		for j := range x {
			if math.Abs(float64(d.X[j]-x[j])) > 1e-6 {
				t.Fatalf("%s: input %d = %v, want %v", c.name, j, d.X[j], x[j])
			}
		}
		lim, err := ReadDense(path, DenseOptions{Limit: 5, Dim: dim})
		if err != nil || lim.N() != 5 || len(lim.X) != 5*dim {
			t.Errorf("Limit 5: %v", err)
		}
		if _, err := ReadDense(path, DenseOptions{Dim: 10}); !errors.Is(err, ErrFeature) || !strings.Contains(err.Error(), "record 0") {
			t.Errorf("wrong Dim: %v", err)
		}
		if _, err := ReadDense(path, DenseOptions{LabelKey: "image"}); !errors.Is(err, ErrFeature) {
			t.Errorf("image as label: %v", err)
		}
	}
	if err := WriteImages(nil, x[:5], labels, dim, ImageOptions{}); !errors.Is(err, ErrFeature) {
		t.Errorf("short x: %v", err)
	}
}

// ReadDense on the Spark records: int64 inputs, and a record missing the
// label is reported with its file and index.
func TestReadDenseSpark(t *testing.T) {
	_, err := ReadDense(testdata+"ecosystem_hadoop_part-m-00000.tfrecord", DenseOptions{FeatureKey: "data"})
	if !errors.Is(err, ErrFeature) || !strings.Contains(err.Error(), "part-m-00000.tfrecord: record 0: label") {
		t.Fatalf("got %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, name := range []string{"ecosystem_hadoop_part-m-00000.tfrecord", "lingvo_wmt14_ende_wpm_32k_test.tfrecord"} {
		recs, err := tfrecord.ReadAll(testdata + name)
		if err != nil {
			f.Fatal(err)
		}
		for _, r := range recs[:min(len(recs), 3)] {
			f.Add(r)
		}
	}
	e := New()
	e.Set("f", FloatFeature(1, 2))
	e.Set("b", BytesFeature([]byte("x")))
	f.Add(e.Encode())
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := Decode(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		// What decodes re-encodes canonically and decodes to the same.
		b := e.Encode()
		e2, err := Decode(b)
		if err != nil {
			t.Fatalf("re-encoded example does not decode: %v", err)
		}
		if !bytes.Equal(e2.Encode(), b) {
			t.Fatalf("canonical encoding not stable")
		}
	})
}
