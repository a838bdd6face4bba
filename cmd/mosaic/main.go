// Command mosaic runs and operates Mosaic, a Glance-compatible image
// service with a deduplicating, content-addressed store.
//
//	mosaic serve [flags]     run a node (API, Raft member, chunk store, optional FUSE mount)
//	mosaic cluster status|leave|remove NODE   inspect and change cluster membership
//	mosaic gc [flags]        run chunk garbage collection on a node now
//	mosaic usage [flags]     a node's storage report (dedup, compression, per image)
//	mosaic verify IMAGE      re-stream an image and verify its content and signature
//	mosaic version           print the version
//
// Flags may also be set in the environment as MOSAIC_<FLAG> (upper case,
// dashes as underscores), e.g. MOSAIC_DATA_DIR.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mosaic:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usage()
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:])
	case "cluster":
		return cluster(ctx, args[1:])
	case "gc":
		return gcCommand(ctx, args[1:])
	case "usage":
		return usageCommand(ctx, args[1:])
	case "verify":
		return verify(ctx, args[1:])
	case "version":
		fmt.Println("mosaic", version)
		return nil
	case "help", "-h", "--help":
		return usage()
	}
	return fmt.Errorf("unknown command %q (try 'mosaic help')", args[0])
}

func usage() error {
	fmt.Fprint(os.Stderr, `usage: mosaic <command> [flags]

commands:
  serve     run a node: Glance v2 API, Raft member, chunk store, optional FUSE mount
  cluster   status | leave | remove NODE: inspect and change cluster membership
  gc        run chunk garbage collection on a node now
  usage     show a node's storage report (dedup, compression, unique bytes per image)
  verify    re-stream an image, recompute its digest, check signature and certificate
  version   print the version

Run 'mosaic <command> -h' for a command's flags. Every flag can also be set
in the environment as MOSAIC_<NAME>, e.g. MOSAIC_DATA_DIR=/var/lib/mosaic.
`)
	return nil
}
