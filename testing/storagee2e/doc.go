// Package storagee2e proves the storage engine's fault behaviour end to
// end: through the real mosaic binary, its HTTP API and a real FUSE mount
// (a corrupt chunk is never served; kill -9 mid-upload leaves no half image
// and GC reclaims the orphans), and in process over a real Pebble store on
// a file system that fails writes (ENOSPC fails the upload cleanly).
package storagee2e
