package paxos

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/adaptkv/adaptkv/storage"
)

// ErrCorruptState is returned by DecodeState for bytes EncodeState did not
// produce.
var ErrCorruptState = errors.New("paxos: corrupt acceptor state")

// stateFormat is the first byte of an encoded State; a new layout takes a
// new number and DecodeState keeps reading the old ones.
const stateFormat = 1

const (
	flagAccepted  = 1 << 0
	flagNoop      = 1 << 1
	flagTombstone = 1 << 2
)

// AppendState appends s's binary encoding to dst. The layout, all integers
// uvarints: format byte, Promised, Committed (counter, node each), a flags
// byte, and when a proposal is accepted its ballot, the record's version
// (timestamp, node), key and value (length-prefixed). A fresh key's state
// is 6 bytes; one with an accepted put is about 20 plus key and value.
func AppendState(dst []byte, s State) []byte {
	dst = append(dst, stateFormat)
	dst = appendBallot(dst, s.Promised)
	dst = appendBallot(dst, s.Committed)
	var flags byte
	a := s.Accepted
	if !a.IsZero() {
		flags |= flagAccepted
		if a.Noop {
			flags |= flagNoop
		}
		if a.Record.Tombstone {
			flags |= flagTombstone
		}
	}
	dst = append(dst, flags)
	if flags&flagAccepted == 0 {
		return dst
	}
	dst = appendBallot(dst, a.Ballot)
	dst = binary.AppendUvarint(dst, a.Record.Version.Timestamp)
	dst = binary.AppendUvarint(dst, uint64(a.Record.Version.Node))
	dst = binary.AppendUvarint(dst, uint64(len(a.Record.Key)))
	dst = append(dst, a.Record.Key...)
	dst = binary.AppendUvarint(dst, uint64(len(a.Record.Value)))
	return append(dst, a.Record.Value...)
}

func appendBallot(dst []byte, b Ballot) []byte {
	dst = binary.AppendUvarint(dst, b.Counter)
	return binary.AppendUvarint(dst, uint64(b.Node))
}

// DecodeState decodes what AppendState wrote. The record's key and value
// are copies: buf may be reused.
func DecodeState(buf []byte) (State, error) {
	d := decoder{buf: buf}
	if f := d.byte(); f != stateFormat {
		if d.err != nil {
			return State{}, d.err
		}
		return State{}, fmt.Errorf("%w: format %d", ErrCorruptState, f)
	}
	var s State
	s.Promised = d.ballot()
	s.Committed = d.ballot()
	flags := d.byte()
	if flags&^(flagAccepted|flagNoop|flagTombstone) != 0 || (flags&flagAccepted == 0 && flags != 0) {
		return State{}, fmt.Errorf("%w: flags %#x", ErrCorruptState, flags)
	}
	if flags&flagAccepted != 0 {
		a := &s.Accepted
		a.Ballot = d.ballot()
		a.Noop = flags&flagNoop != 0
		a.Record.Tombstone = flags&flagTombstone != 0
		a.Record.Version = storage.Version{Timestamp: d.uvarint(), Node: d.uint32()}
		a.Record.Key = d.bytes()
		a.Record.Value = d.bytes()
		if a.Ballot.IsZero() && d.err == nil {
			d.err = fmt.Errorf("%w: accepted proposal with the zero ballot", ErrCorruptState)
		}
	}
	if d.err == nil && len(d.buf) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrCorruptState, len(d.buf))
	}
	if d.err != nil {
		return State{}, d.err
	}
	return s, nil
}

type decoder struct {
	buf []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated %s", ErrCorruptState, what)
	}
	d.buf = nil
}

func (d *decoder) byte() byte {
	if len(d.buf) == 0 {
		d.fail("byte")
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	if n > 1 && d.buf[n-1] == 0 {
		// An overlong encoding: AppendState never writes one, so the
		// bytes are not its.
		if d.err == nil {
			d.err = fmt.Errorf("%w: overlong varint", ErrCorruptState)
		}
		d.buf = nil
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) uint32() uint32 {
	v := d.uvarint()
	if v > 1<<32-1 {
		if d.err == nil {
			d.err = fmt.Errorf("%w: node id %d out of range", ErrCorruptState, v)
		}
		return 0
	}
	return uint32(v)
}

func (d *decoder) ballot() Ballot {
	return Ballot{Counter: d.uvarint(), Node: d.uint32()}
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.buf)) {
		d.fail("bytes")
		return nil
	}
	if n == 0 {
		return nil
	}
	b := append([]byte(nil), d.buf[:n]...)
	d.buf = d.buf[n:]
	return b
}
