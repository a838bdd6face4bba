package chunker

// gear is FastCDC's table of 256 random 64-bit values, generated with
// SplitMix64 from a fixed seed so that boundaries never change between
// builds. Changing it changes every chunk ID Mosaic has stored.
var gear = func() (t [256]uint64) {
	x := uint64(0x6d6f73616963) // "mosaic"
	for i := range t {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		t[i] = z ^ (z >> 31)
	}
	return t
}()
