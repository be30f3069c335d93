// Package tfconfig reads TF_CONFIG, the environment variable through which
// TensorFlow's cluster launchers — Kubeflow's TFJob operator above all —
// tell each process its cluster and its own task:
//
//	{"cluster":{"chief":["job-chief-0.ns.svc:2222"],
//	            "ps":["job-ps-0.ns.svc:2222","job-ps-1.ns.svc:2222"],
//	            "worker":["job-worker-0.ns.svc:2222","job-worker-1.ns.svc:2222"]},
//	 "task":{"type":"worker","index":1},"environment":"cloud"}
//
// How flowps maps it:
//
//   - Role: a "ps" task runs psd; "chief" (or the older "master") and
//     "worker" tasks run the trainer; an "evaluator" only evaluates.
//   - ID: "<type>-<index>" ("ps-1", "worker-0"), unique in the job.
//   - Rank and Workers: the chief is rank 0 and the workers follow it
//     (worker i is rank i+1 with a chief, i without); Workers counts
//     workers plus the chief, the number of pushes sync mode waits for.
//   - Ports: the TFJob operator gives every task one HOST:PORT (the pod's
//     headless-service name and the TFJob port, 2222 by default). flowps
//     uses that port for gossip (memberlist, TCP and UDP), because gossip
//     is the only thing a peer must know in advance: gRPC and RDMA
//     endpoints travel in gossip metadata. The gRPC parameter service
//     listens on PORT+GRPCPortOffset (PORT+1). Both bind 0.0.0.0
//     (Endpoints.GossipBind, GRPCBind), since the service name resolves to
//     the pod address and is not itself bindable; the pod's one IP is then
//     what gossip advertises. Headless services reach
//     the pod directly, so the second port and UDP need no extra service
//     entries; the TFJob only has to declare PORT.
//   - PSSeeds: the ps addresses, the gossip seeds psd and trainers join. A
//     ps task gets the others, not itself: a lone ps starts the cluster, and
//     several ps each keep retrying the others (psd's --join-timeout) while
//     their own gossip is already listening, so they may start in any order.
//
// Flags override TF_CONFIG: after parsing its flags, a command passes the
// TF_CONFIG-derived values to ApplyFlags, which sets only the flags the user
// did not set on the command line.
//
//	cfg, err := tfconfig.FromEnv() // nil, nil when TF_CONFIG is unset
//	if err != nil { return err }    // wraps ErrInvalid, says what is wrong
//	if cfg != nil {
//		rank, _ := cfg.Rank()
//		ep, _ := cfg.Endpoints()
//		join := cfg.PSSeeds()
//		...
//	}
package tfconfig
