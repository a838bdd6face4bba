// Package archtest checks Mosaic's dependency rules (docs/architecture.md):
// dependencies point inward, and each third-party system is confined to the
// package that needs it. `make lint` and `make test` fail when a rule breaks.
package archtest
