package main

import (
	"flag"
	"fmt"
	"net"
	"strings"

	"github.com/flowps/flowps/tfconfig"
)

// applyTFConfig takes this psd's place in the cluster from $TF_CONFIG, when
// set, for every flag the command line left unset: --id ("ps-<index>"),
// --gossip (the task's TF_CONFIG address: its port is the gossip port),
// --listen (the same host at port+1, the gRPC service) and --join (the
// other ps tasks). A host that is an IP literal is bound as is; a DNS name
// (the TFJob's headless service) is not bindable, so its wildcard form
// 0.0.0.0:PORT is bound instead and peers learn the interface address from
// gossip. A task that is not a ps task is an error. It returns the parsed
// configuration (nil without TF_CONFIG) and the flags it set.
func applyTFConfig(fs *flag.FlagSet) (*tfconfig.Config, []string, error) {
	tc, err := tfconfig.FromEnv()
	if err != nil || tc == nil {
		return nil, nil, err
	}
	if tc.Role() != tfconfig.RolePS {
		return nil, nil, fmt.Errorf("$TF_CONFIG says this task is %s: psd runs ps tasks (chief and worker tasks run the trainer)", tc.ID())
	}
	ep, err := tc.Endpoints()
	if err != nil {
		return nil, nil, err
	}
	values := map[string]string{
		"id":     tc.ID(),
		"gossip": bindAddr(ep.Host, ep.Gossip, ep.GossipBind),
		"listen": bindAddr(ep.Host, ep.GRPC, ep.GRPCBind),
	}
	if seeds := tc.PSSeeds(); len(seeds) > 0 {
		values["join"] = strings.Join(seeds, ",")
	}
	applied, err := tfconfig.ApplyFlags(fs, values)
	if err != nil {
		return nil, nil, err
	}
	return tc, applied, nil
}

// bindAddr returns addr when host is an IP literal, else wildcard.
func bindAddr(host, addr, wildcard string) string {
	if net.ParseIP(host) != nil {
		return addr
	}
	return wildcard
}
