// Package harness starts real mosaic processes for system tests: it builds
// the binary once per test binary, picks free loopback ports, starts nodes
// on temporary data directories, waits until they serve, and kills (-9) or
// stops them on demand. It fails the test loudly, never skips, when a tool
// the test needs is missing.
package harness
