package inproc

import (
	"context"
	"fmt"
	"slices"

	"github.com/flowps/flowps/ps"
)

// Method names of the replication calls passed to a fault hook.
const (
	MethodReplicate = "Replicate"
	MethodFetch     = "Fetch"
	MethodInstall   = "Install"
)

var _ ps.Replicator = (*client)(nil)

func replicatorOf(svc ps.Service) (ps.Replicator, error) {
	rep, ok := svc.(ps.Replicator)
	if !ok {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "inproc: %T does not serve replication calls", svc)
	}
	return rep, nil
}

// Replicate implements ps.Replicator.
func (c *client) Replicate(ctx context.Context, req *ps.ReplicateRequest) (*ps.ReplicateResponse, error) {
	return call(ctx, c, MethodReplicate, func(ctx context.Context, svc ps.Service) (*ps.ReplicateResponse, error) {
		rep, err := replicatorOf(svc)
		if err != nil {
			return nil, err
		}
		resp, err := rep.Replicate(ctx, cloneReplicateRequest(req))
		if err != nil || resp == nil {
			return nil, orNilResponse(err)
		}
		return &ps.ReplicateResponse{Status: slices.Clone(resp.Status), Promised: slices.Clone(resp.Promised)}, nil
	})
}

// Fetch implements ps.Replicator.
func (c *client) Fetch(ctx context.Context, req *ps.FetchRequest) (*ps.FetchResponse, error) {
	return call(ctx, c, MethodFetch, func(ctx context.Context, svc ps.Service) (*ps.FetchResponse, error) {
		rep, err := replicatorOf(svc)
		if err != nil {
			return nil, err
		}
		in := *req
		if req.Fence != nil {
			f := *req.Fence
			in.Fence = &f
		}
		resp, err := rep.Fetch(ctx, &in)
		if err != nil || resp == nil {
			return nil, orNilResponse(err)
		}
		out := *resp
		if out.State, err = cloneState(resp.State); err != nil {
			return nil, err
		}
		return &out, nil
	})
}

// Install implements ps.Replicator.
func (c *client) Install(ctx context.Context, req *ps.InstallRequest) (*ps.InstallResponse, error) {
	return call(ctx, c, MethodInstall, func(ctx context.Context, svc ps.Service) (*ps.InstallResponse, error) {
		rep, err := replicatorOf(svc)
		if err != nil {
			return nil, err
		}
		in := *req
		if in.State, err = cloneState(req.State); err != nil {
			return nil, err
		}
		resp, err := rep.Install(ctx, &in)
		if err != nil || resp == nil {
			return nil, orNilResponse(err)
		}
		out := *resp
		return &out, nil
	})
}

// cloneState copies a partition state through its binary encoding, as a
// wire transport would.
func cloneState(st *ps.PartitionState) (*ps.PartitionState, error) {
	if st == nil {
		return nil, nil
	}
	b, err := st.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("inproc: %w", err)
	}
	out := &ps.PartitionState{}
	if err := out.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("inproc: %w", err)
	}
	return out, nil
}

func cloneReplicateRequest(r *ps.ReplicateRequest) *ps.ReplicateRequest {
	if r == nil {
		return &ps.ReplicateRequest{}
	}
	out := *r
	out.Ops = slices.Clone(r.Ops)
	for i := range out.Ops {
		out.Ops[i].Rows = slices.Clone(r.Ops[i].Rows)
		out.Ops[i].Grad = slices.Clone(r.Ops[i].Grad)
	}
	return &out
}
