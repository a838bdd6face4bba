// Package e2e holds end-to-end tests that run the real mosaic binary as a
// process and drive it with the real OpenStack clients (glance, openstack)
// over real HTTP, with a real FUSE mount.
package e2e
