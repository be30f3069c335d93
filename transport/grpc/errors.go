package grpctransport

import (
	"context"
	"fmt"

	"github.com/flowps/flowps/ps"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errorDomain marks the ErrorInfo detail that carries a ps.Code.
const errorDomain = "flowps.ps"

// grpcCode maps each ps code to the closest gRPC status code, so that
// generic gRPC tooling sees a sensible code; the ps code itself travels in
// an ErrorInfo detail and decides the error rebuilt on the client.
var grpcCode = map[ps.Code]codes.Code{
	ps.CodeNotOwner:        codes.FailedPrecondition,
	ps.CodeUnknownVariable: codes.NotFound,
	ps.CodeSpecMismatch:    codes.AlreadyExists,
	ps.CodeShapeMismatch:   codes.InvalidArgument,
	ps.CodeNonFinite:       codes.InvalidArgument,
	ps.CodeStale:           codes.Aborted,
	ps.CodeInvalidArgument: codes.InvalidArgument,
	ps.CodeTooLarge:        codes.ResourceExhausted,
	ps.CodeUnavailable:     codes.Unavailable,
	ps.CodeClosed:          codes.Unavailable,
	ps.CodeCanceled:        codes.Canceled,
	ps.CodeDeadline:        codes.DeadlineExceeded,
	ps.CodeInternal:        codes.Internal,
}

// toStatus turns a service error into a gRPC status error carrying its
// ps.Code and text.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	code := ps.CodeOf(err)
	gc, ok := grpcCode[code]
	if !ok {
		gc = codes.Internal
	}
	st := status.New(gc, err.Error())
	if withInfo, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: string(code), Domain: errorDomain}); derr == nil {
		st = withInfo
	}
	return st.Err()
}

// fromStatus turns the error of a call to op at addr into a ps error: the
// sentinel the server named, the caller's own context error, or, when the
// call failed below the service (connection refused or lost, server
// stopping), ps.ErrUnavailable.
func fromStatus(ctx context.Context, op, addr string, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("grpc %s %s: %w", op, addr, cerr)
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("grpc %s %s: %w", op, addr, err)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
			// A failed call whose detail names no error (a peer's bug)
			// falls through to the status code: never a nil error.
			if perr := ps.ErrorFromCode(ps.Code(info.GetReason()), st.Message()); perr != nil {
				return perr
			}
		}
	}
	var sentinel error
	switch st.Code() {
	case codes.Unavailable:
		sentinel = ps.ErrUnavailable
	case codes.Canceled:
		// Not our context (checked above): the connection was closed
		// under the call.
		sentinel = ps.ErrUnavailable
	case codes.DeadlineExceeded:
		sentinel = context.DeadlineExceeded
	case codes.ResourceExhausted:
		sentinel = ps.ErrTooLarge
	default:
		return fmt.Errorf("grpc %s %s: %s: %s", op, addr, st.Code(), st.Message())
	}
	return fmt.Errorf("grpc %s %s: %s: %w", op, addr, st.Message(), sentinel)
}
