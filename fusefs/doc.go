// Package fusefs is Mosaic's read-only FUSE tree, for hypervisors that boot
// images straight from a mounted path:
//
//	/images/<id>   the content of each active image (mode 0444)
//
// Nodes are thin: they ask the engine (through the ImageSource interface
// declared here) for records and readers, and translate errors once, in
// errnoFor. Reads are stateless ReadAt calls on the engine's verified
// reader; no lock serialises reads on a handle.
package fusefs
