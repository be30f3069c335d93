package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flowps/flowps/data"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(mainArgs(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// options are the program's flags.
type options struct {
	Data         string
	Epochs       int
	Batch        int
	LR           float64
	Seeds        []int64
	Codecs       []string
	TrainCodecs  []string
	CaptureSteps []int64
	Reps         int
	MinTime      time.Duration
	JSON         string
}

// mainArgs runs the program and returns its exit status: 0 on success, 2
// for bad flags, 1 for anything else.
func mainArgs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("compress", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		o           options
		seeds       = fs.String("seeds", "1", "model and shuffle seeds of the accuracy runs, a comma list (one run per codec per seed)")
		codecs      = fs.String("codecs", strings.Join(allCodecs, ","), "codecs measured for size and CPU")
		trainCodecs = fs.String("train-codecs", "none,bf16,fp16,topk1%,topk10%,toprows10%", "codecs trained with (lossless ones train exactly as none)")
		capture     = fs.String("capture", "10,1000", "training steps of the none run whose gradients are measured")
	)
	fs.StringVar(&o.Data, "data", "mnist", "mnist (see package data), synthetic, or a DIR with the MNIST IDX files")
	fs.IntVar(&o.Epochs, "epochs", 3, "epochs of each accuracy run")
	fs.IntVar(&o.Batch, "batch", 128, "batch size")
	fs.Float64Var(&o.LR, "lr", 0.1, "SGD learning rate")
	fs.IntVar(&o.Reps, "reps", 3, "repetitions of each CPU measurement (the median is reported)")
	fs.DurationVar(&o.MinTime, "min-time", 200*time.Millisecond, "CPU time per repetition, at least")
	fs.StringVar(&o.JSON, "json", "", "write every row as a JSON line to `FILE`")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./benchmarks/compress [flags]\n\nTrains the MNIST MLP with every gradient passed through a wire codec\n(encode → decode) and measures, on real gradients and weights, each codec's\nbytes on the wire, CPU time and effect on accuracy.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, format+"\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return bad("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.Seeds, err = parseInts(*seeds); err != nil || len(o.Seeds) == 0 {
		return bad("--seeds %q: want a comma list of integers", *seeds)
	}
	if o.CaptureSteps, err = parseInts(*capture); err != nil || len(o.CaptureSteps) == 0 {
		return bad("--capture %q: want a comma list of steps", *capture)
	}
	o.Codecs, o.TrainCodecs = splitList(*codecs), splitList(*trainCodecs)
	for _, c := range append(slices.Clone(o.Codecs), o.TrainCodecs...) {
		if _, err := newCodec(c, 1); err != nil {
			return bad("%v", err)
		}
	}
	if o.Epochs < 1 || o.Batch < 1 || !(o.LR > 0) || o.Reps < 1 || o.MinTime < 0 {
		return bad("--epochs, --batch, --lr and --reps must be positive")
	}
	if err := runAll(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	return 0
}

func runAll(ctx context.Context, o options, stdout, progress io.Writer) error {
	trainSet, testSet, err := loadData(ctx, o.Data)
	if err != nil {
		return err
	}
	var jsonOut *json.Encoder
	if o.JSON != "" {
		f, err := os.Create(o.JSON)
		if err != nil {
			return fmt.Errorf("--json: %w", err)
		}
		defer f.Close()
		jsonOut = json.NewEncoder(f)
	}
	fmt.Fprintf(stdout, "flowps compression study: %s, %s, GOMAXPROCS %d; MLP 784-256-128-10 on %s (%d train, %d test), batch %d, SGD lr %g, %d epochs\n\n",
		time.Now().UTC().Format("2006-01-02 15:04"), goruntime.Version(), goruntime.GOMAXPROCS(0), o.Data, trainSet.N(), testSet.N(), o.Batch, o.LR, o.Epochs)

	// Accuracy runs; the none run of the first seed also captures real
	// gradients.
	order := slices.Clone(o.TrainCodecs)
	if i := slices.Index(order, "none"); i > 0 {
		order = append([]string{"none"}, slices.Delete(order, i, i+1)...)
	}
	var runs []*trainResult
	var base *trainResult
	for _, seed := range o.Seeds {
		for _, c := range order {
			tc := trainConfig{Codec: c, Epochs: o.Epochs, Batch: o.Batch, LR: float32(o.LR), Seed: seed}
			capturing := base == nil && c == "none"
			if capturing {
				tc.CaptureSteps = o.CaptureSteps
			}
			fmt.Fprintf(progress, "training with %s (seed %d)...\n", c, seed)
			r, err := train(ctx, tc, trainSet, testSet)
			if err != nil {
				return err
			}
			fmt.Fprintf(progress, "  %s seed %d: test accuracy %v in %.1fs\n", c, seed, r.EpochAccuracy, r.Seconds)
			if capturing {
				base = r
			}
			runs = append(runs, r)
			if jsonOut != nil {
				if err := jsonOut.Encode(map[string]any{"kind": "accuracy", "run": r}); err != nil {
					return err
				}
			}
		}
	}

	// Real tensors: captured gradients and the trained weights.
	var sets []tensorSet
	if base != nil {
		for _, st := range o.CaptureSteps {
			grads := base.store.captured[st]
			if len(grads) == 0 {
				return fmt.Errorf("--capture: step %d was not reached (%d steps ran)", st, base.Steps)
			}
			sets = append(sets, setOf(fmt.Sprintf("grad@%d", st), grads, base.store.rowSizes))
		}
		w := map[string][]float32{}
		for _, n := range base.store.inner.Names() {
			w[n] = base.store.inner.Value(n)
		}
		sets = append(sets, setOf(fmt.Sprintf("weights@%d", base.Steps), w, base.store.rowSizes))
	}
	var rows []codecRow
	for _, set := range sets {
		for _, c := range o.Codecs {
			if strings.HasPrefix(set.Name, "weights") && strings.HasPrefix(c, "top") {
				continue // top-k is for gradients; a pull needs every weight
			}
			fmt.Fprintf(progress, "measuring %s on %s...\n", c, set.Name)
			r, err := measureCodec(set, c, o.Reps, o.MinTime)
			if err != nil {
				return err
			}
			rows = append(rows, r)
			if jsonOut != nil {
				if err := jsonOut.Encode(map[string]any{"kind": "codec", "row": r}); err != nil {
					return err
				}
			}
		}
	}
	for _, set := range sets {
		n, zeros := 0, 0
		for _, t := range set.Tensors {
			n += len(t)
			for _, v := range t {
				if v == 0 {
					zeros++
				}
			}
		}
		fmt.Fprintf(stdout, "%s: %d tensors, %d values, %.1f%% exact zeros\n", set.Name, len(set.Tensors), n, 100*float64(zeros)/float64(max(1, n)))
	}
	if len(rows) > 0 {
		fmt.Fprintf(stdout, "\nWire size and CPU (one thread; medians of %d reps of ≥ %v; MB = 1e6 bytes of float32)\n", o.Reps, o.MinTime)
		printCodecTable(stdout, rows)
		fmt.Fprintln(stdout)
	}
	fmt.Fprintln(stdout, "Accuracy: every gradient through encode → decode (top-k keeps its residual on the trainer)")
	printAccuracyTable(stdout, runs)
	return nil
}

func setOf(name string, m map[string][]float32, rowSizes map[string]int) tensorSet {
	s := tensorSet{Name: name}
	for _, n := range sortedKeys(m) {
		s.Names = append(s.Names, n)
		s.Tensors = append(s.Tensors, m[n])
		s.RowSizes = append(s.RowSizes, max(1, rowSizes[n]))
	}
	return s
}

func sortedKeys(m map[string][]float32) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func loadData(ctx context.Context, spec string) (trainSet, testSet *data.Dataset, err error) {
	if spec == "synthetic" {
		return data.Synthetic(data.SyntheticConfig{Train: 6000, Test: 1000, Seed: 1})
	}
	dir, err := data.ResolveDir(ctx, spec)
	if err != nil {
		return nil, nil, err
	}
	return data.LoadMNIST(dir)
}

func printCodecTable(w io.Writer, rows []codecRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tensors\tcodec\traw bytes\twire bytes\twire/raw\tenc ms/MB\tdec ms/MB\trel error\tpays below GB/s\t")
	prev := ""
	for _, r := range rows {
		if prev != "" && r.Set != prev {
			fmt.Fprintln(tw, "\t\t\t\t\t\t\t\t\t")
		}
		prev = r.Set
		be := "never"
		if r.BreakEvenGBps > 0 {
			be = fmt.Sprintf("%.3f", r.BreakEvenGBps)
		}
		if r.Codec == "none" {
			be = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.4f\t%.2f\t%.2f\t%.2g\t%s\t\n", r.Set, r.Codec, r.RawBytes, r.WireBytes, r.Ratio, r.EncodeMsPerMB, r.DecodeMsPerMB, r.RelError, be)
	}
	tw.Flush()
}

func printAccuracyTable(w io.Writer, runs []*trainResult) {
	var base map[int64]float64 = map[int64]float64{}
	for _, r := range runs {
		if r.Codec == "none" {
			base[r.Seed] = r.TestAccuracy
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "codec\tseed\ttest acc per epoch\tfinal\tΔ vs none\ttrain loss\twire/raw\tgrad rel err\tseconds\t")
	for _, r := range runs {
		accs := make([]string, len(r.EpochAccuracy))
		for i, a := range r.EpochAccuracy {
			accs[i] = fmt.Sprintf("%.4f", a)
		}
		delta := "-"
		if b, ok := base[r.Seed]; ok && r.Codec != "none" {
			delta = fmt.Sprintf("%+.4f", r.TestAccuracy-b)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.4f\t%s\t%.4f\t%.4f\t%.2g\t%.1f\t\n", r.Codec, r.Seed, strings.Join(accs, " "), r.TestAccuracy, delta, r.TrainLoss, r.WireRatio, r.MeanRelError, r.Seconds)
	}
	tw.Flush()
}

func parseInts(s string) ([]int64, error) {
	var out []int64
	for _, f := range splitList(s) {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
