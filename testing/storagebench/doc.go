// Package storagebench holds the storage figures the issue names, as Go
// benchmarks that report ratios measured in the same run: ingest of a real
// VM image against the CPU ceiling computed from per-stage costs, re-ingest
// against first ingest, and sequential and random reads from Pebble with
// verification. They read the dedup dataset (testing/fixtures) and run in
// `make bench`, never in `make test`.
package storagebench
