// Package fusefs is Mosaic's read-only FUSE tree, for hypervisors that boot
// images straight from a mounted path:
//
//	/images/<id>      the content of each active image (mode 0444); a
//	                  deactivated image is listed but opening it fails
//	                  with EACCES; a deleted one is gone
//	/by-name/<name>   a symlink to ../images/<id> for every active image
//	                  whose name no other active image shares
//
// Each image file carries user.mosaic.* extended attributes (id, name,
// status, disk_format, container_format, checksum, os_hash_algo,
// os_hash_value, signature).
//
// Content is immutable (an inode is one image's one manifest), so the mount
// uses long entry and attribute timeouts and keeps the kernel's page cache
// across opens (FOPEN_KEEP_CACHE); 1 MiB requests (MaxWrite) with the
// mount's read-ahead raised to match; SEEK_DATA/SEEK_HOLE over the
// manifest's zero runs. A watcher polls the image records and invalidates
// the kernel's cached names when images appear, vanish or change name, so
// the long timeouts do not delay what users see.
//
// Nodes are thin: they ask the engine (through the ImageSource interface
// declared here) for records and readers, and translate errors once, in
// errnoFor. Every read is a stateless offset read on a verified engine
// reader owned by the open file handle (ImageReader.Slices: the request's
// chunks load concurrently and their cached bytes go to the kernel without
// a copy); no lock serialises reads. An image with a complete local copy
// (Options.LocalCopies, the node's image cache) is opened with FUSE
// passthrough: the kernel reads the copy itself. Options.Signatures is the
// open-time hook of the mount's --verify-signatures.
// File locking is left to the kernel (QEMU's OFD locks work on the mount
// because the file system does not claim lock support it lacks).
//
// All types are safe for concurrent use.
package fusefs
