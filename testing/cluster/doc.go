// Package cluster runs Mosaic clusters under test: one Cluster interface
// with two implementations, nodes in this process on loopback
// (StartInProcess) and real `mosaic serve` processes on 127.0.0.x
// addresses (StartProcesses), so the same test bodies run on both.
//
// Faults: Kill (kill -9 for processes; for in-process nodes an abrupt stop
// that cuts their connections first), Restart, Partition/Heal. In process a
// fault-injecting network (faultnet.go) carries Raft and node-to-node HTTP;
// for processes a TCP proxy in front of every node's Raft and API ports
// (proxy.go) drops connections by source address (each node dials from its
// own 127.0.0.x).
package cluster
