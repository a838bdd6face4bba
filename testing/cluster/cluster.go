package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"testing"
)

// Cluster is a running set of Mosaic nodes. Node indexes are stable;
// methods fail the test on error. Not safe for concurrent fault calls.
type Cluster interface {
	// Len is the number of nodes ever started (killed ones included).
	Len() int
	// URL is node i's Glance API base URL (clients talk to it directly,
	// never through a fault).
	URL(i int) string
	// APIAddr is node i's API address.
	APIAddr(i int) string
	// NodeID is node i's node ID.
	NodeID(i int) string
	// Secret is the cluster secret.
	Secret() string
	// Kill stops node i abruptly (kill -9 for a process).
	Kill(i int)
	// Restart starts a killed node again on its data.
	Restart(i int)
	// Running reports whether node i runs.
	Running(i int) bool
	// Partition cuts node i off from every other node (clients still
	// reach it); Heal restores every link.
	Partition(i int)
	Heal()
	// Add starts a new storage node that joins the cluster and returns its
	// index; AddNonVoter one that joins as a Raft non-voter (no chunks).
	Add() int
	AddNonVoter() int
}

// Options tune a test cluster.
type Options struct {
	// Replicas is R; 0 means 3.
	Replicas int
	// ExtraArgs are added to every process's `mosaic serve` arguments.
	ExtraArgs []string
	// Direct connects processes without the partition proxies (benchmarks:
	// the proxies add a hop). Partition then fails the test.
	Direct bool
}

// StartFunc starts a cluster of n nodes (the same signature for both
// implementations, so test bodies take one).
type StartFunc func(t testing.TB, n int, o Options) Cluster

// Impls lists both implementations by name.
var Impls = []struct {
	Name  string
	Start StartFunc
}{
	{"inprocess", func(t testing.TB, n int, o Options) Cluster { return StartInProcess(t, n, o) }},
	{"processes", func(t testing.TB, n int, o Options) Cluster { return StartProcesses(t, n, o) }},
}

func newSecret() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
