package chunker

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// Params sets chunk sizes. Chunks are at least Min and at most Max bytes
// long (except the last chunk of a stream, which may be shorter than Min);
// their mean is close to Avg. With Align > 0, chunks end only at stream
// offsets that are multiples of Align (disk images are block-aligned), apart
// from the stream's end.
type Params struct {
	Min, Avg, Max int
	Align         int
	// Normalization is FastCDC's normalization level (0 = plain
	// gear-hash CDC, 1-3 narrower size distributions). 2 is the paper's
	// recommendation.
	Normalization int
}

// DefaultParams are the sizes Mosaic uses for images: FastCDC with
// normalization 2, cut points aligned to 4 KiB. docs/chunking.md has the
// measurements behind them.
var DefaultParams = Params{Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10, Align: 4 << 10, Normalization: 2}

// PlainParams are DefaultParams without alignment (plain FastCDC).
var PlainParams = Params{Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10, Normalization: 2}

// Validate checks that the sizes are usable.
func (p Params) Validate() error {
	switch {
	case p.Min < WindowSize:
		return fmt.Errorf("chunker: min %d is below the %d-byte window", p.Min, WindowSize)
	case p.Avg <= p.Min:
		return fmt.Errorf("chunker: avg %d must exceed min %d", p.Avg, p.Min)
	case p.Max <= p.Avg:
		return fmt.Errorf("chunker: max %d must exceed avg %d", p.Max, p.Avg)
	case p.Max > 64<<20:
		return fmt.Errorf("chunker: max %d exceeds 64 MiB", p.Max)
	case p.Avg&(p.Avg-1) != 0:
		return fmt.Errorf("chunker: avg %d must be a power of two", p.Avg)
	case p.Normalization < 0 || p.Normalization > 3:
		return fmt.Errorf("chunker: normalization %d outside 0..3", p.Normalization)
	case p.Align < 0:
		return fmt.Errorf("chunker: negative align %d", p.Align)
	case p.Align > 0 && (p.Align&(p.Align-1) != 0 || p.Min%p.Align != 0 || p.Max%p.Align != 0 || p.Avg%p.Align != 0):
		return fmt.Errorf("chunker: align %d must be a power of two dividing min, avg and max", p.Align)
	case p.Align > 0 && p.Avg/p.Align < 4:
		return fmt.Errorf("chunker: avg %d must be at least 4 × align %d", p.Avg, p.Align)
	}
	return nil
}

// WindowSize is the number of bytes a fingerprint depends on: the gear hash
// shifts by one bit per byte, so after 64 bytes older input has left the
// 64-bit fingerprint entirely.
const WindowSize = 64

// maskBit lists fingerprint bits in the order masks take them: the upper 32
// bits (each depends on at least the last 33 bytes), in bit-reversed order so
// that any prefix is spread over the word. Masks are prefixes, so the
// harder mask always contains the easier one.
var maskBit = func() (b [32]uint8) {
	for r := range b {
		b[r] = uint8(63 - bits.Reverse8(uint8(r))>>3)
	}
	return b
}()

func prefixMask(n int) uint64 {
	n = max(1, min(n, len(maskBit)))
	var m uint64
	for _, b := range maskBit[:n] {
		m |= 1 << b
	}
	return m
}

// masks returns the FastCDC masks for chunk lengths up to Avg (harder to
// match) and beyond it (easier). With alignment only one position in Align
// is tested, so the masks lose log2(Align) bits.
func (p Params) masks() (small, large uint64) {
	b := bits.Len(uint(p.Avg)) - 1
	if p.Align > 1 {
		b -= bits.Len(uint(p.Align)) - 1
	}
	return prefixMask(b + p.Normalization), prefixMask(b - p.Normalization)
}

// Cutter finds chunk boundaries in a stream fed in pieces. The zero value is
// not usable; create one with NewCutter.
//
// The fingerprint at a byte is the gear hash of the WindowSize bytes ending
// there (the stream is taken to start after WindowSize zero bytes), so it
// does not depend on where the current chunk began. That lets the cutter
// skip the first Min bytes of a chunk, hash several stretches of the stream
// at once (independent dependency chains the CPU overlaps), and, with Align,
// hash only the window before each aligned offset.
type Cutter struct {
	p            Params
	maskS, maskL uint64
	pos          int              // bytes of the current chunk consumed so far
	hist         [WindowSize]byte // the last WindowSize bytes of the stream before the next Scan
}

// NewCutter returns a Cutter at the start of a stream.
func NewCutter(p Params) (*Cutter, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	c := &Cutter{p: p}
	c.maskS, c.maskL = p.masks()
	return c, nil
}

// Reset starts a new stream with the same parameters.
func (c *Cutter) Reset() { c.pos, c.hist = 0, [WindowSize]byte{} }

// Scan consumes data, the next bytes of the stream. It returns the number
// of bytes n of data that belong to the current chunk and whether the chunk
// ends after them. When end is true the next call starts a new chunk with
// data[n:]; when false, all of data was consumed and the chunk goes on.
func (c *Cutter) Scan(data []byte) (n int, end bool) {
	p := &c.p
	if c.pos+len(data) < p.Min {
		c.consume(data, len(data))
		return len(data), false
	}
	// A cut after data[i] makes a chunk of c.pos+i+1 bytes.
	lo := max(0, p.Min-c.pos-1)
	hi := min(len(data), p.Max-c.pos)
	sEnd := p.Avg - c.pos - 1 // cuts after data[i] with i <= sEnd use the harder mask
	var cut int
	if p.Align > 1 {
		cut = c.scanAligned(data, lo, hi, sEnd)
	} else {
		cut = c.scanGear(data, lo, hi, sEnd)
	}
	switch {
	case cut >= 0:
		n = cut + 1
	case c.pos+hi == p.Max:
		n = hi
	default:
		c.consume(data, len(data))
		return len(data), false
	}
	c.consume(data, n)
	c.pos = 0
	return n, true
}

// consume records that data[:n] has been read.
func (c *Cutter) consume(data []byte, n int) {
	c.pos += n
	if n >= WindowSize {
		copy(c.hist[:], data[n-WindowSize:n])
		return
	}
	copy(c.hist[:], c.hist[n:])
	copy(c.hist[WindowSize-n:], data[:n])
}

// fpBefore returns the fingerprint after the byte preceding data[a]: the
// gear hash of the WindowSize stream bytes before index a.
func (c *Cutter) fpBefore(data []byte, a int) uint64 {
	g := &gear
	var fp uint64
	if a >= WindowSize {
		for _, b := range data[a-WindowSize : a] {
			fp = fp<<1 + g[b]
		}
		return fp
	}
	for _, b := range c.hist[a:] {
		fp = fp<<1 + g[b]
	}
	for _, b := range data[:a] {
		fp = fp<<1 + g[b]
	}
	return fp
}

// lanes × laneLen bytes are hashed per round by lanes independent chains.
const (
	lanes   = 4
	laneLen = 2048
)

// scanLanes advances the gear hashes f of four lanes of d (laneLen bytes
// apart) from byte j on until one of them has no bit of mask set, and
// returns that j (laneLen if none did), f holding the hashes after byte j. It is
// kept out of line so that the hot loop has the registers to itself: with
// the cut checks in the same function the compiler spilled lane pointers
// or hashes to the stack on every byte.
//
//go:noinline
func scanLanes(d *[lanes * laneLen]byte, g *[256]uint64, j uint, f *[lanes]uint64, mask uint64) uint {
	_, _ = d[0], g[0] // nil checks here, not in the loop
	f0, f1, f2, f3 := f[0], f[1], f[2], f[3]
	for ; j < laneLen; j++ {
		f0 = f0<<1 + g[d[j]]
		f1 = f1<<1 + g[d[j+laneLen]]
		f2 = f2<<1 + g[d[j+2*laneLen]]
		f3 = f3<<1 + g[d[j+3*laneLen]]
		if f0&mask == 0 || f1&mask == 0 || f2&mask == 0 || f3&mask == 0 {
			break
		}
	}
	f[0], f[1], f[2], f[3] = f0, f1, f2, f3
	return j
}

// scanFewLanes is scanLanes for the first n < lanes lanes only.
//
//go:noinline
func scanFewLanes(d *[lanes * laneLen]byte, g *[256]uint64, j uint, f *[lanes]uint64, n int, mask uint64) uint {
	_, _ = d[0], g[0]
	switch n {
	case 1:
		f0 := f[0]
		for ; j < laneLen; j++ {
			if f0 = f0<<1 + g[d[j]]; f0&mask == 0 {
				break
			}
		}
		f[0] = f0
	case 2:
		f0, f1 := f[0], f[1]
		for ; j < laneLen; j++ {
			f0 = f0<<1 + g[d[j]]
			f1 = f1<<1 + g[d[j+laneLen]]
			if f0&mask == 0 || f1&mask == 0 {
				break
			}
		}
		f[0], f[1] = f0, f1
	default:
		f0, f1, f2 := f[0], f[1], f[2]
		for ; j < laneLen; j++ {
			f0 = f0<<1 + g[d[j]]
			f1 = f1<<1 + g[d[j+laneLen]]
			f2 = f2<<1 + g[d[j+2*laneLen]]
			if f0&mask == 0 || f1&mask == 0 || f2&mask == 0 {
				break
			}
		}
		f[0], f[1], f[2] = f0, f1, f2
	}
	return j
}

// windows3 returns the gear hashes of the WindowSize bytes before lanes
// 1, 2 and 3 of d (where those lanes start), as three interleaved chains:
// one after the other, their latency cost as much as a fifth of a lane.
func windows3(d *[lanes * laneLen]byte) (f1, f2, f3 uint64) {
	g := &gear
	for j := laneLen - WindowSize; j < laneLen; j++ {
		f1 = f1<<1 + g[d[j]]
		f2 = f2<<1 + g[d[j+laneLen]]
		f3 = f3<<1 + g[d[j+2*laneLen]]
	}
	return f1, f2, f3
}

// scanGear returns the first index i in [lo, hi) after which the chunk is
// cut, or -1.
func (c *Cutter) scanGear(data []byte, lo, hi, sEnd int) int {
	g := &gear
	mS, mL := c.maskS, c.maskL
	i := lo
	fp := c.fpBefore(data, lo)
	for hi-i >= lanes*laneLen {
		d := (*[lanes * laneLen]byte)(data[i : i+lanes*laneLen])
		f := [lanes]uint64{fp}
		f[1], f[2], f[3] = windows3(d)
		best := [lanes]int{-1, -1, -1, -1}
		found := false
		// live lanes: once lane k has a cut, lanes after it cannot hold
		// the first one, and only lanes before it are scanned on.
		live := lanes
		for j := uint(0); j < laneLen; j++ {
			if live == lanes {
				j = scanLanes(d, &gear, j, &f, mL)
			} else {
				j = scanFewLanes(d, &gear, j, &f, live, mL)
			}
			if j == laneLen {
				break
			}
			for k := range live {
				idx := i + k*laneLen + int(j)
				if best[k] < 0 && f[k]&mL == 0 && (idx > sEnd || f[k]&mS == 0) {
					best[k], found = idx, true
					live = k
					break
				}
			}
			if best[0] >= 0 {
				return best[0]
			}
		}
		if found {
			for _, b := range best {
				if b >= 0 {
					return b
				}
			}
		}
		fp = f[3]
		i += lanes * laneLen
	}
	for ; i < hi; i++ {
		fp = fp<<1 + g[data[i]]
		if fp&mL == 0 && (i > sEnd || fp&mS == 0) {
			return i
		}
	}
	return -1
}

// scanAligned is scanGear for Align > 1: only cuts at chunk offsets that
// are multiples of Align are possible, so only the window before each of
// them is hashed.
func (c *Cutter) scanAligned(data []byte, lo, hi, sEnd int) int {
	a := c.p.Align
	// First i >= lo with (c.pos+i+1) % a == 0.
	i := lo + (a-(c.pos+lo+1)%a)%a
	for ; i < hi; i += a {
		fp := c.fpBefore(data, i+1)
		if fp&c.maskL == 0 && (i > sEnd || fp&c.maskS == 0) {
			return i
		}
	}
	return -1
}

// Chunk is one chunk of a stream. Data is valid until the next call to Next.
type Chunk struct {
	Offset int64
	Data   []byte
}

// Chunker splits an io.Reader into chunks. It allocates one buffer of
// 2×Max bytes at creation and nothing per chunk.
type Chunker struct {
	r      io.Reader
	cut    *Cutter
	buf    []byte
	start  int // first byte of the next chunk in buf
	end    int // bytes of buf filled
	off    int64
	eof    bool
	errSav error
}

// New returns a Chunker reading from r.
func New(r io.Reader, p Params) (*Chunker, error) {
	c, err := NewCutter(p)
	if err != nil {
		return nil, err
	}
	return &Chunker{r: r, cut: c, buf: make([]byte, 2*p.Max)}, nil
}

// Next returns the next chunk, or io.EOF after the last one.
func (ch *Chunker) Next() (Chunk, error) {
	if ch.start == ch.end {
		if ch.eof {
			return Chunk{}, ch.finalErr()
		}
		ch.start, ch.end = 0, 0
	}
	scanned := ch.start
	for {
		if scanned < ch.end {
			n, end := ch.cut.Scan(ch.buf[scanned:ch.end])
			scanned += n
			if end {
				return ch.emit(scanned), nil
			}
		}
		if ch.eof {
			ch.cut.pos = 0
			return ch.emit(ch.end), nil
		}
		// Need more bytes: move the partial chunk to the front, then fill.
		if ch.start > 0 {
			copy(ch.buf, ch.buf[ch.start:ch.end])
			ch.end -= ch.start
			scanned -= ch.start
			ch.start = 0
		}
		n, err := io.ReadAtLeast(ch.r, ch.buf[ch.end:], 1)
		ch.end += n
		if err != nil {
			ch.eof = true
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				ch.errSav = err
			}
			if ch.start == ch.end {
				return Chunk{}, ch.finalErr()
			}
		}
	}
}

func (ch *Chunker) emit(to int) Chunk {
	c := Chunk{Offset: ch.off, Data: ch.buf[ch.start:to:to]}
	ch.off += int64(to - ch.start)
	ch.start = to
	return c
}

func (ch *Chunker) finalErr() error {
	if ch.errSav != nil {
		return ch.errSav
	}
	return io.EOF
}
