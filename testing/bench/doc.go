// Package bench holds the long-running figures of `make bench`: whole-system
// measurements (a real engine over Pebble, a real FUSE mount, QEMU) that are
// too slow for `make test`. Each figure is reported next to its baseline
// measured in the same run (the same bytes in a file on the same ext4
// disk), because the machine is shared and absolute numbers are noisy.
package bench
