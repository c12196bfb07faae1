package decode

import (
	"bytes"
	"encoding/binary"
)

// reader walks one pgoutput message. All integers are big-endian (network
// order), strings are NUL-terminated.
//
// A read past the end returns a zero value, records the offset where it
// happened and moves to the end, so that every later read fails too; callers
// check failed() once after a group of reads instead of after each one. The
// reader never copies: returned byte slices alias the message buffer.
type reader struct {
	b       []byte
	off     int
	short   bool // a read ran past the end of b
	failOff int  // offset of the first read that ran past the end
}

func (r *reader) fail() {
	if !r.short {
		r.short = true
		r.failOff = r.off
	}
	r.off = len(r.b)
}

// failed reports whether any read ran past the end of the message.
func (r *reader) failed() bool { return r.short }

// remaining is the number of unread bytes.
func (r *reader) remaining() int { return len(r.b) - r.off }

func (r *reader) uint8() byte {
	if r.off >= len(r.b) {
		r.fail()
		return 0
	}
	v := r.b[r.off]
	r.off++
	return v
}

func (r *reader) uint16() uint16 {
	if len(r.b)-r.off < 2 {
		r.fail()
		return 0
	}
	v := binary.BigEndian.Uint16(r.b[r.off:])
	r.off += 2
	return v
}

func (r *reader) uint32() uint32 {
	if len(r.b)-r.off < 4 {
		r.fail()
		return 0
	}
	v := binary.BigEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v
}

func (r *reader) uint64() uint64 {
	if len(r.b)-r.off < 8 {
		r.fail()
		return 0
	}
	v := binary.BigEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v
}

// bytes returns the next n bytes without copying them.
func (r *reader) bytes(n int) []byte {
	if n < 0 || len(r.b)-r.off < n {
		r.fail()
		return nil
	}
	v := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return v
}

// cstring returns the next NUL-terminated string without its NUL, without
// copying it.
func (r *reader) cstring() []byte {
	if r.off >= len(r.b) {
		r.fail()
		return nil
	}
	i := bytes.IndexByte(r.b[r.off:], 0)
	if i < 0 {
		r.fail()
		return nil
	}
	v := r.b[r.off : r.off+i]
	r.off += i + 1
	return v
}
