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

// DefaultParams are the sizes Mosaic uses for images; docs/chunking.md has
// the measurements behind them.
var DefaultParams = Params{Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10, Normalization: 2}

// Validate checks that the sizes are usable.
func (p Params) Validate() error {
	switch {
	case p.Min < 64:
		return fmt.Errorf("chunker: min %d is below 64 bytes", p.Min)
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
	}
	return nil
}

// masks returns the FastCDC masks for the region before Avg (harder to
// match) and after it (easier). With alignment only one position in Align is
// tested, so the masks lose log2(Align) bits.
func (p Params) masks() (small, large uint64) {
	b := bits.Len(uint(p.Avg)) - 1
	if p.Align > 1 {
		b -= bits.Len(uint(p.Align)) - 1
	}
	bs, bl := b+p.Normalization, b-p.Normalization
	if bl < 1 {
		bl = 1
	}
	return spreadMask(bs), spreadMask(bl)
}

// spreadMask returns a mask with n one bits spread over the upper 48 bits
// of the fingerprint, where the gear hash mixes best.
func spreadMask(n int) uint64 {
	if n <= 0 {
		return 0
	}
	var m uint64
	step := 48 / n
	if step < 1 {
		step = 1
	}
	for i := 0; i < n; i++ {
		m |= 1 << (63 - i*step)
	}
	return m
}

// Cutter finds chunk boundaries in a stream fed in pieces. The zero value is
// not usable; create one with NewCutter.
type Cutter struct {
	p            Params
	maskS, maskL uint64
	pos          int    // bytes of the current chunk scanned so far
	fp           uint64 // gear fingerprint
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

// Reset starts a new chunk (and stream) with the same parameters.
func (c *Cutter) Reset() { c.pos, c.fp = 0, 0 }

// Scan consumes data, the next bytes of the stream. It returns the number
// of bytes n of data that belong to the current chunk and whether the chunk
// ends after them. When end is true the next call starts a new chunk with
// data[n:]; when false, all of data was consumed and the chunk goes on.
func (c *Cutter) Scan(data []byte) (n int, end bool) {
	p := &c.p
	pos, fp := c.pos, c.fp
	i := 0
	// Below Min nothing can cut; the fingerprint restarts at Min (the gear
	// hash forgets bytes older than 64 positions, so nothing is lost).
	if pos < p.Min {
		skip := min(p.Min-pos, len(data))
		i, pos = skip, pos+skip
		if pos < p.Min {
			c.pos = pos
			return len(data), false
		}
		fp = 0
	}
	if p.Align > 1 {
		return c.scanAligned(data, i, pos, fp)
	}
	off := pos - i // chunk offset of data[0]
	// Region [Min, Avg): the harder mask.
	if off+i < p.Avg {
		lim := min(len(data), p.Avg-off)
		for ; i < lim; i++ {
			fp = (fp << 1) + gear[data[i]]
			if fp&c.maskS == 0 {
				c.pos, c.fp = 0, 0
				return i + 1, true
			}
		}
	}
	// Region [Avg, Max): the easier mask.
	lim := min(len(data), p.Max-off)
	for ; i < lim; i++ {
		fp = (fp << 1) + gear[data[i]]
		if fp&c.maskL == 0 {
			c.pos, c.fp = 0, 0
			return i + 1, true
		}
	}
	if off+i >= p.Max {
		c.pos, c.fp = 0, 0
		return i, true
	}
	c.pos, c.fp = off+i, fp
	return len(data), false
}

// scanAligned is Scan for Align > 1: the fingerprint runs over every byte,
// but a cut is tested only at chunk offsets that are multiples of Align.
func (c *Cutter) scanAligned(data []byte, i, pos int, fp uint64) (int, bool) {
	p := &c.p
	a := p.Align - 1
	for ; i < len(data); i++ {
		fp = (fp << 1) + gear[data[i]]
		pos++
		if pos&a != 0 {
			continue
		}
		mask := c.maskL
		if pos < p.Avg {
			mask = c.maskS
		}
		if fp&mask == 0 || pos >= p.Max {
			c.pos, c.fp = 0, 0
			return i + 1, true
		}
	}
	c.pos, c.fp = pos, fp
	return len(data), false
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
			ch.cut.Reset()
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
