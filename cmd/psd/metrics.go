package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics exports the server's counters, the partitions it owns and the
// membership view in the Prometheus text format, and the per-call series
// (counts, latency and payload histograms by transport and peer) that the
// observed() wrapper of the served ps.Service records in rpc.
type metrics struct {
	n   *node
	reg *prometheus.Registry
	rpc *rpcMetrics
}

func newMetrics(n *node) *metrics {
	m := &metrics{n: n, reg: prometheus.NewRegistry(), rpc: newRPCMetrics()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(m)
	m.rpc.register(m.reg)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

var (
	descCounter = func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("flowps_"+name, help, nil, nil)
	}
	mCreates    = descCounter("creates_total", "Create calls that succeeded.")
	mPulls      = descCounter("pulls_total", "Pull calls that succeeded.")
	mPushes     = descCounter("pushes_total", "Push calls that succeeded.")
	mRejected   = descCounter("rejected_total", "Calls that failed: bad input, not owner, stale, canceled.")
	mBytesIn    = descCounter("push_bytes_total", "Gradient bytes accepted by pushes.")
	mBytesOut   = descCounter("pull_bytes_total", "Value bytes returned by pulls.")
	mUpdates    = descCounter("updates_total", "Optimizer applications.")
	mApply      = descCounter("apply_seconds_total", "Time spent applying optimizers.")
	mWaits      = descCounter("staleness_waits_total", "Pull parts that waited for a version or an SSP clock.")
	mWaitSecs   = descCounter("staleness_wait_seconds_total", "Time pulls spent waiting for versions or clocks.")
	mDups       = descCounter("duplicate_pushes_total", "Push parts ignored as retries or second gradients for a step.")
	mPartitions = descCounter("partitions_owned", "Partitions this node hosts.")
	mMembers    = prometheus.NewDesc("flowps_members", "Members in this node's view, by role.", []string{"role"}, nil)
	mEpoch      = descCounter("view_epoch", "Membership view epoch (increments on every change).")
	mVersion    = prometheus.NewDesc("flowps_partition_version", "Version of each hosted partition.", []string{"var", "part"}, nil)
)

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mCreates, mPulls, mPushes, mRejected, mBytesIn, mBytesOut, mUpdates,
		mApply, mWaits, mWaitSecs, mDups, mPartitions, mMembers, mEpoch, mVersion} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.n.server.Stats()
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	counter(mCreates, float64(s.Creates))
	counter(mPulls, float64(s.Pulls))
	counter(mPushes, float64(s.Pushes))
	counter(mRejected, float64(s.Rejected))
	counter(mBytesIn, float64(s.BytesIn))
	counter(mBytesOut, float64(s.BytesOut))
	counter(mUpdates, float64(s.Updates))
	counter(mApply, float64(s.ApplyNanos)/1e9)
	counter(mWaits, float64(s.StalenessWaits))
	counter(mWaitSecs, float64(s.WaitNanos)/1e9)
	counter(mDups, float64(s.Duplicates))
	parts := m.n.server.Status()
	ch <- prometheus.MustNewConstMetric(mPartitions, prometheus.GaugeValue, float64(len(parts)))
	for _, p := range parts {
		ch <- prometheus.MustNewConstMetric(mVersion, prometheus.GaugeValue, float64(p.Version), p.Key.Var, itoa(p.Key.Index))
	}
	v := m.n.members.View()
	roles := map[string]int{"ps": 0, "trainer": 0}
	for _, mb := range v.Members {
		roles[string(mb.Role)]++
	}
	for r, c := range roles {
		ch <- prometheus.MustNewConstMetric(mMembers, prometheus.GaugeValue, float64(c), r)
	}
	ch <- prometheus.MustNewConstMetric(mEpoch, prometheus.GaugeValue, float64(v.Epoch))
}
