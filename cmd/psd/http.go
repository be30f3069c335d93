package main

import (
	"encoding/json"
	"html/template"
	"net/http"
	"net/http/pprof"
	"sort"
	"time"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/sharding"
)

// status is the JSON document /status serves.
type status struct {
	ID     string        `json:"id"`
	Role   sharding.Role `json:"role"`
	Addr   string        `json:"addr"`
	Gossip string        `json:"gossip"`
	// Data and DataLocal are where the data path listens: TCP and, for
	// clients in this network namespace, the abstract Unix socket.
	Data       string          `json:"data,omitempty"`
	DataLocal  string          `json:"data_local,omitempty"`
	Epoch      uint64          `json:"epoch"`
	Uptime     string          `json:"uptime"`
	Replicas   int             `json:"replicas"`
	Transport  transportStatus `json:"transport"`
	Members    []memberStatus  `json:"members"`
	Partitions []ps.PartStatus `json:"partitions"`
}

type memberStatus struct {
	ID     string        `json:"id"`
	Role   sharding.Role `json:"role"`
	Addr   string        `json:"addr"`
	Gossip string        `json:"gossip,omitempty"`
	Host   string        `json:"host,omitempty"`
	// FabricProvider is the RDMA provider the member advertises, if any.
	FabricProvider string `json:"fabric_provider,omitempty"`
}

func (n *node) status() status {
	self := n.members.Self()
	st := status{
		ID: n.cfg.ID, Role: sharding.RolePS, Addr: self.Addr, Gossip: self.Gossip,
		Uptime: time.Since(n.start).Round(time.Second).String(), Replicas: n.cfg.Replicas,
		Partitions: n.server.Status(), Transport: n.fabric.status(nil),
		Data: n.grpc.DataAddr(), DataLocal: n.grpc.LocalDataAddr(),
	}
	n.mu.Lock()
	st.Epoch = n.epoch
	n.mu.Unlock()
	for _, m := range n.members.Members() {
		st.Members = append(st.Members, memberStatus{ID: m.ID, Role: m.Role, Addr: m.Addr, Gossip: m.Gossip, Host: m.Host, FabricProvider: m.FabricProvider})
	}
	sort.Slice(st.Partitions, func(i, j int) bool {
		a, b := st.Partitions[i].Key, st.Partitions[j].Key
		if a.Var != b.Var {
			return a.Var < b.Var
		}
		return a.Index < b.Index
	})
	if st.Partitions == nil {
		st.Partitions = []ps.PartStatus{}
	}
	return st
}

func (n *node) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(n.status())
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		statusPage.Execute(w, n.status())
	})
	mux.Handle("GET /metrics", n.metrics.handler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

var statusPage = template.Must(template.New("status").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>psd {{.ID}}</title>
<meta http-equiv="refresh" content="5">
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}</style>
</head><body>
<h1>psd {{.ID}}</h1>
<p>gRPC {{.Addr}} · gossip {{.Gossip}} · data path {{if .Data}}{{.Data}}{{if .DataLocal}} and {{.DataLocal}}{{end}}{{else}}off{{end}} · view epoch {{.Epoch}} · up {{.Uptime}} · replicas {{.Replicas}}</p>
<p>fabric: {{with .Transport}}{{if .FabricProvider}}{{.FabricProvider}}, {{.FabricClients}} clients{{else}}none{{end}} — {{.Reason}}{{end}}</p>
<h2>Members ({{len .Members}})</h2>
<table><tr><th>id</th><th>role</th><th>address</th><th>gossip</th><th>host</th><th>fabric</th></tr>
{{range .Members}}<tr><td>{{.ID}}</td><td>{{.Role}}</td><td>{{.Addr}}</td><td>{{.Gossip}}</td><td>{{.Host}}</td><td>{{.FabricProvider}}</td></tr>
{{end}}</table>
<h2>Partitions owned ({{len .Partitions}})</h2>
<table><tr><th>variable</th><th>part</th><th>rows</th><th>version</th><th>mode</th></tr>
{{range .Partitions}}<tr><td>{{.Key.Var}}</td><td>{{.Key.Index}}</td><td>{{.Rows.Start}}–{{.Rows.End}}</td><td>{{.Version}}</td><td>{{.Mode}}</td></tr>
{{end}}</table>
<p><a href="/status">JSON</a> · <a href="/metrics">metrics</a> · <a href="/debug/pprof/">pprof</a></p>
</body></html>
`))
