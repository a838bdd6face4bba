// Package tenancy holds the multi-tenant end-to-end tests: the real mosaic
// binary in token mode (a token file) and in keystone mode (Debian's real
// Keystone, testing/keystone), driven over HTTP and with the real glance
// and openstack CLIs through the same scenarios — projects, members and
// readers; private, shared, community and public images; the members API;
// admin-only changes; tokens that must be refused — and the benchmark of
// Keystone mode's cost over token mode (make bench).
package tenancy
