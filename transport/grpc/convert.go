package grpctransport

import (
	"time"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/transport/grpc/pb"
)

// Conversions between ps types and pb messages. Tensor values are not
// converted here: they travel in frames (see codec.go).

func keyToPB(k ps.PartKey) *pb.PartKey { return &pb.PartKey{Var: k.Var, Index: int64(k.Index)} }

func keyFromPB(k *pb.PartKey) ps.PartKey {
	return ps.PartKey{Var: k.GetVar(), Index: int(k.GetIndex())}
}

func intsToPB(v []int) []int64 {
	if v == nil {
		return nil
	}
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return out
}

func intsFromPB(v []int64) []int {
	if len(v) == 0 {
		return nil
	}
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}

// rowsFromPB keeps the distinction between no row list (nil, a dense
// access) and an empty one.
func rowsFromPB(sparse bool, rows []int64) []int64 {
	if !sparse {
		return nil
	}
	if rows == nil {
		return []int64{}
	}
	return rows
}

func createToPB(r *ps.CreateRequest) *pb.CreateRequest {
	s := &r.Spec
	return &pb.CreateRequest{
		Spec: &pb.VariableSpec{
			Name:  s.Name,
			Shape: s.Shape,
			Init: &pb.Initializer{Kind: string(s.Init.Kind), Value: s.Init.Value, Min: s.Init.Min, Max: s.Init.Max,
				Mean: s.Init.Mean, Stddev: s.Init.Stddev, Seed: s.Init.Seed},
			Optimizer: &pb.OptimizerSpec{Kind: string(s.Optimizer.Kind), Lr: s.Optimizer.LR, Momentum: s.Optimizer.Momentum,
				Nesterov: s.Optimizer.Nesterov, Beta1: s.Optimizer.Beta1, Beta2: s.Optimizer.Beta2, Epsilon: s.Optimizer.Epsilon,
				InitialAccumulator: s.Optimizer.InitialAccumulator, L1: s.Optimizer.L1, L2: s.Optimizer.L2, LrPower: s.Optimizer.LRPower},
			Consistency: &pb.Consistency{Mode: string(s.Consistency.Mode), Workers: int64(s.Consistency.Workers),
				Backup: int64(s.Consistency.Backup), Staleness: int64(s.Consistency.Staleness)},
			AllowNonFinite:    s.AllowNonFinite,
			MinPartitionBytes: s.MinPartitionBytes,
			MaxPartitionBytes: s.MaxPartitionBytes,
		},
		Parts: intsToPB(r.Parts),
	}
}

func createFromPB(r *pb.CreateRequest) *ps.CreateRequest {
	s := r.GetSpec()
	in, o, c := s.GetInit(), s.GetOptimizer(), s.GetConsistency()
	shape := s.GetShape()
	if len(shape) == 0 {
		shape = nil
	}
	return &ps.CreateRequest{
		Spec: ps.VariableSpec{
			Name:  s.GetName(),
			Shape: shape,
			Init: ps.Initializer{Kind: ps.InitKind(in.GetKind()), Value: in.GetValue(), Min: in.GetMin(), Max: in.GetMax(),
				Mean: in.GetMean(), Stddev: in.GetStddev(), Seed: in.GetSeed()},
			Optimizer: ps.OptimizerSpec{Kind: ps.OptimizerKind(o.GetKind()), LR: o.GetLr(), Momentum: o.GetMomentum(),
				Nesterov: o.GetNesterov(), Beta1: o.GetBeta1(), Beta2: o.GetBeta2(), Epsilon: o.GetEpsilon(),
				InitialAccumulator: o.GetInitialAccumulator(), L1: o.GetL1(), L2: o.GetL2(), LRPower: o.GetLrPower()},
			Consistency: ps.Consistency{Mode: ps.Mode(c.GetMode()), Workers: int(c.GetWorkers()),
				Backup: int(c.GetBackup()), Staleness: int(c.GetStaleness())},
			AllowNonFinite:    s.GetAllowNonFinite(),
			MinPartitionBytes: s.GetMinPartitionBytes(),
			MaxPartitionBytes: s.GetMaxPartitionBytes(),
		},
		Parts: intsFromPB(r.GetParts()),
	}
}

func versionsFromPB(v []int64) []int64 {
	if len(v) == 0 {
		return nil
	}
	return v
}

func pullToPB(r *ps.PullRequest) *pb.PullRequest {
	out := &pb.PullRequest{ClientId: r.ClientID, Worker: int64(r.Worker), Clock: r.Clock}
	if len(r.Parts) > 0 {
		out.Parts = make([]*pb.PullPart, len(r.Parts))
	}
	for i, p := range r.Parts {
		out.Parts[i] = &pb.PullPart{Key: keyToPB(p.Key), Sparse: p.Rows != nil, Rows: p.Rows, MinVersion: p.MinVersion}
	}
	return out
}

func pullFromPB(r *pb.PullRequest) *ps.PullRequest {
	out := &ps.PullRequest{ClientID: r.GetClientId(), Worker: int(r.GetWorker()), Clock: r.GetClock()}
	if len(r.GetParts()) > 0 {
		out.Parts = make([]ps.PullPart, len(r.Parts))
	}
	for i, p := range r.GetParts() {
		out.Parts[i] = ps.PullPart{Key: keyFromPB(p.GetKey()), Rows: rowsFromPB(p.GetSparse(), p.GetRows()), MinVersion: p.GetMinVersion()}
	}
	return out
}

// pullHeader describes resp's parts and returns their values in order.
func pullHeader(resp *ps.PullResponse) (*pb.PullHeader, [][]float32) {
	h := &pb.PullHeader{Parts: make([]*pb.PartValuesHeader, len(resp.Parts)), WaitedNanos: int64(resp.Waited)}
	vals := make([][]float32, len(resp.Parts))
	for i, p := range resp.Parts {
		h.Parts[i] = &pb.PartValuesHeader{Key: keyToPB(p.Key), Version: p.Version, HasValues: p.Values != nil, NumValues: int64(len(p.Values))}
		vals[i] = p.Values
	}
	return h, vals
}

// pullFromHeader builds the response a header announces and returns the
// segments the frames fill, in order. A part whose request part (same
// index in req, which may be nil) has a Dst of the announced length gets
// Dst itself as Values, so the frames decode straight into the caller's
// buffer; every other part's Values is a window of one backing array
// allocated for them.
func pullFromHeader(h *pb.PullHeader, maxBytes int64, req *ps.PullRequest) (*ps.PullResponse, [][]float32, error) {
	parts := h.GetParts()
	if _, err := totalValues(len(parts), func(i int) int64 { return parts[i].GetNumValues() }, maxBytes); err != nil {
		return nil, nil, err
	}
	dst := func(i int) []float32 {
		if req == nil || i >= len(req.Parts) || !parts[i].GetHasValues() {
			return nil
		}
		if d := req.Parts[i].Dst; d != nil && int64(len(d)) == parts[i].GetNumValues() {
			return d
		}
		return nil
	}
	var rest int64
	for i, p := range parts {
		if dst(i) == nil {
			rest += p.GetNumValues()
		}
	}
	backing := make([]float32, rest)
	resp := &ps.PullResponse{Waited: time.Duration(max(0, h.GetWaitedNanos()))}
	if len(parts) > 0 {
		resp.Parts = make([]ps.PartValues, len(parts))
	}
	segs := make([][]float32, 0, len(parts))
	var at int64
	for i, p := range parts {
		resp.Parts[i] = ps.PartValues{Key: keyFromPB(p.GetKey()), Version: p.GetVersion()}
		v := dst(i)
		if v == nil {
			n := p.GetNumValues()
			v = backing[at : at+n : at+n]
			at += n
		}
		if p.GetHasValues() {
			resp.Parts[i].Values = v
		}
		if len(v) > 0 {
			segs = append(segs, v)
		}
	}
	return resp, segs, nil
}

// pushHeader describes req's parts and returns their gradients in order.
func pushHeader(req *ps.PushRequest) (*pb.PushHeader, [][]float32) {
	h := &pb.PushHeader{ClientId: req.ClientID, Seq: req.Seq, Worker: int64(req.Worker), Clock: req.Clock}
	if len(req.Parts) > 0 {
		h.Parts = make([]*pb.PushPartHeader, len(req.Parts))
	}
	vals := make([][]float32, len(req.Parts))
	for i, p := range req.Parts {
		h.Parts[i] = &pb.PushPartHeader{Key: keyToPB(p.Key), Sparse: p.Rows != nil, Rows: p.Rows,
			HasGrad: p.Grad != nil, NumValues: int64(len(p.Grad)), Step: p.Step}
		vals[i] = p.Grad
	}
	return h, vals
}

// pushFromHeader is pullFromHeader for pushes.
func pushFromHeader(h *pb.PushHeader, maxBytes int64) (*ps.PushRequest, []float32, error) {
	return pushFromHeaderAlloc(h, maxBytes, func(n int) []float32 { return make([]float32, n) })
}

// pushFromHeaderAlloc is pushFromHeader with the backing array from alloc,
// which must return n elements (of any contents: the frames overwrite all).
func pushFromHeaderAlloc(h *pb.PushHeader, maxBytes int64, alloc func(n int) []float32) (*ps.PushRequest, []float32, error) {
	total, err := totalValues(len(h.GetParts()), func(i int) int64 { return h.Parts[i].GetNumValues() }, maxBytes)
	if err != nil {
		return nil, nil, err
	}
	backing := alloc(int(total))
	req := &ps.PushRequest{ClientID: h.GetClientId(), Seq: h.GetSeq(), Worker: int(h.GetWorker()), Clock: h.GetClock()}
	if len(h.GetParts()) > 0 {
		req.Parts = make([]ps.PushPart, len(h.Parts))
	}
	var at int64
	for i, p := range h.GetParts() {
		n := p.GetNumValues()
		req.Parts[i] = ps.PushPart{Key: keyFromPB(p.GetKey()), Rows: rowsFromPB(p.GetSparse(), p.GetRows()), Step: p.GetStep()}
		if p.GetHasGrad() {
			req.Parts[i].Grad = backing[at : at+n : at+n]
		}
		at += n
	}
	return req, backing, nil
}

// totalValues sums announced part sizes, refusing negative sizes and totals
// above maxBytes (a peer must not make us allocate at will).
func totalValues(n int, size func(int) int64, maxBytes int64) (int64, error) {
	var total int64
	for i := 0; i < n; i++ {
		s := size(i)
		if s < 0 {
			return 0, ps.Errorf(ps.ErrInvalidArgument, "part %d announces %d values", i, s)
		}
		// Compared before adding, so that no sum of sizes can wrap.
		if s > maxBytes/4-total {
			return 0, ps.Errorf(ps.ErrTooLarge, "tensor data exceeds the limit of %d bytes", maxBytes)
		}
		total += s
	}
	return total, nil
}

// sendFrames splits the concatenation of vals into frames of at most chunk
// elements and passes them to send in order; the first frame carries
// header. It always sends at least one frame. roots, when non-nil, holds
// per part the reference-counted buffer its values are (or nil): frames
// then hand gRPC references to it instead of bare views.
func sendFrames(header proto.Message, vals [][]float32, roots []mem.Buffer, chunk int, send func(*frameOut) error) error {
	f := &frameOut{header: header}
	room := chunk
	var offset int64
	for i, v := range vals {
		var root mem.Buffer
		if i < len(roots) {
			root = roots[i]
		}
		for at := 0; at < len(v); {
			k := min(room, len(v)-at)
			f.data = append(f.data, v[at:at+k])
			if roots != nil {
				f.bufs = append(f.bufs, frameBuf{root, 4 * at})
			}
			at += k
			room -= k
			offset += int64(k)
			if room == 0 {
				if err := send(f); err != nil {
					return err
				}
				f = &frameOut{offset: offset}
				room = chunk
			}
		}
	}
	if f.header != nil || len(f.data) > 0 {
		return send(f)
	}
	return nil
}
