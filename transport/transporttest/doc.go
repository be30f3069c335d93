// Package transporttest is the conformance suite every flowps transport
// runs, in the manner of hashicorp/raft's transport tests and gonum's
// testblas: one set of tests, many implementations.
//
// A transport's test file calls Run with a Harness that knows how to serve a
// ps.Service and how to dial it:
//
//	func TestConformance(t *testing.T) {
//		transporttest.Run(t, transporttest.Harness{
//			Name: "inproc",
//			Serve: func(t *testing.T, svc ps.Service) (string, func()) {
//				stop := network.Serve("ps-0", svc)
//				return "ps-0", stop
//			},
//			Dialer: func(t *testing.T) ps.Dialer { return network.Dialer("trainer") },
//		})
//	}
//
// The suite serves its own recording Fake service rather than ps.Server, so
// what it checks is the transport alone: exact round trips (Diff compares
// float bit patterns and distinguishes nil from empty Rows, Values and Grad;
// other slices may come back nil when sent empty), errors that keep their
// sentinel and message, context cancellation and deadlines reaching the
// server, concurrency, 64 MiB payloads (≥ 1 GiB with FLOWPS_BIG=1 and without
// -short), ps.ErrUnavailable from a stopped server and idempotent Close.
//
// Fake and Diff are exported for benchmarks and transport-specific tests.
package transporttest
