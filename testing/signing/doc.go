// Package signing holds the end-to-end tests and benchmarks of image
// signing: the key-manager API (also through python-barbicanclient), signed
// uploads for every key type and hash method with keys, certificates and
// signatures made by openssl, `mosaic verify`, the mount's
// --verify-signatures, and the glance CLI flow. They run the real mosaic
// binary over real HTTP, Raft, Pebble and FUSE.
package signing
