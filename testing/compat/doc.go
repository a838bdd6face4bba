// Package compat compares Mosaic's answers with the real Glance's: it runs
// the shared edge-case script (../shared/glance/real-glance/edge-cases.sh)
// against a Mosaic node and checks every status code against the one the
// real Glance 25.1 gave (../shared/glance/expected/edge-noauth.tsv). Every
// difference must be listed, with its reason, in docs/compat.md.
package compat
