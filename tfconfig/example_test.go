package tfconfig_test

import (
	"fmt"

	"github.com/flowps/flowps/tfconfig"
)

func ExampleParse() {
	cfg, err := tfconfig.Parse([]byte(`{"cluster":{"chief":["job-chief-0.ns.svc:2222"],` +
		`"ps":["job-ps-0.ns.svc:2222"],"worker":["job-worker-0.ns.svc:2222","job-worker-1.ns.svc:2222"]},` +
		`"task":{"type":"worker","index":1},"environment":"cloud"}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	rank, _ := cfg.Rank()
	ep, _ := cfg.Endpoints()
	fmt.Println(cfg.Role(), cfg.ID(), rank, cfg.Workers())
	fmt.Println(cfg.PSSeeds())
	fmt.Println(ep.GossipBind, ep.GRPC)
	// Output:
	// trainer worker-1 2 3
	// [job-ps-0.ns.svc:2222]
	// 0.0.0.0:2222 job-worker-1.ns.svc:2223
}
