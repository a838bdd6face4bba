package main

import (
	"context"
	"strings"
	"testing"
)

// TestMountRefusesIncompleteFlags: a mount host needs a directory, the
// storage nodes to join and the cluster secret; each is named when missing.
func TestMountRefusesIncompleteFlags(t *testing.T) {
	t.Setenv("MOSAIC_CLUSTER_SECRET", "")
	secret := "--cluster-secret=0123456789abcdef"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster", "a:1", secret}, "usage: mosaic mount"},
		{[]string{secret, "/tmp/x"}, "--cluster is required"},
		{[]string{"--cluster", "a:1", "/tmp/x"}, "cluster secret is required"},
		{[]string{"--cluster", "a:1", "--cluster-secret", "short", "/tmp/x"}, "at least 16"},
		{[]string{"--cluster", "a:1", secret, "--cache-size", "0", "/tmp/x"}, "--cache-size"},
		{[]string{"--cluster", "a:1", secret, "--lease-ttl", "1s", "/tmp/x"}, "--lease-ttl"},
		{[]string{"/tmp/x", "/tmp/y", "--cluster", "a:1", secret}, "usage: mosaic mount"},
	} {
		err := mountCommand(context.Background(), tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("mount %v: %v; want an error containing %q", tc.args, err, tc.want)
		}
	}
}
