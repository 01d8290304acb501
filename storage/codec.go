package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// ErrCorrupt is wrapped by every error about stored bytes that cannot be
// decoded. It means the disk or a bug produced them, never the caller.
var ErrCorrupt = errors.New("storage: corrupt data")

// ErrInvalid is wrapped by errors about arguments that break the Engine
// contract: an empty keyspace, a keyspace containing NUL, or an empty key.
var ErrInvalid = errors.New("storage: invalid argument")

// Layout of the user records in the pebble key space. The prefix byte leaves
// room for other families of keys next to the records; the NUL after the
// keyspace name ends it, so that keyspace "a" sorts and scans apart from "ab"
// (keyspace names cannot contain NUL).
const (
	recordPrefix = 'd'
	keyspaceEnd  = 0x00

	// valueHeaderLen is timestamp (8) + node (4) + flags (1).
	valueHeaderLen = 13
	flagTombstone  = 1 << 0
)

func checkKeyspace(keyspace string) error {
	if keyspace == "" || strings.IndexByte(keyspace, 0) >= 0 {
		return fmt.Errorf("%w: keyspace %q must be non-empty and contain no NUL", ErrInvalid, keyspace)
	}
	return nil
}

func checkKey(key []byte) error {
	if len(key) == 0 {
		return fmt.Errorf("%w: empty key", ErrInvalid)
	}
	return nil
}

// appendKey appends the engine key of (keyspace, key) to dst. With a nil key
// it yields the prefix shared by every key of the keyspace.
func appendKey(dst []byte, keyspace string, key []byte) []byte {
	dst = append(dst, recordPrefix)
	dst = append(dst, keyspace...)
	dst = append(dst, keyspaceEnd)
	return append(dst, key...)
}

// decodeKey splits an engine key. The returned key aliases k.
func decodeKey(k []byte) (keyspace string, key []byte, err error) {
	if len(k) == 0 || k[0] != recordPrefix {
		return "", nil, fmt.Errorf("%w: key %q lacks the record prefix", ErrCorrupt, k)
	}
	i := 1
	for i < len(k) && k[i] != keyspaceEnd {
		i++
	}
	if i == 1 || i >= len(k)-1 {
		return "", nil, fmt.Errorf("%w: key %q lacks a keyspace or a user key", ErrCorrupt, k)
	}
	return string(k[1:i]), k[i+1:], nil
}

// appendValue appends the stored form of rec (everything but its key) to dst.
// A tombstone's value is dropped: it has none by definition.
func appendValue(dst []byte, rec *Record) []byte {
	dst = binary.BigEndian.AppendUint64(dst, rec.Version.Timestamp)
	dst = binary.BigEndian.AppendUint32(dst, rec.Version.Node)
	if rec.Tombstone {
		return append(dst, flagTombstone)
	}
	dst = append(dst, 0)
	return append(dst, rec.Value...)
}

// decodeValue parses a stored value. The returned value aliases b and is nil
// when empty. Unknown flag bits are rejected rather than ignored so that a
// newer format is never silently misread.
func decodeValue(b []byte) (v Version, tombstone bool, value []byte, err error) {
	if len(b) < valueHeaderLen {
		return Version{}, false, nil, fmt.Errorf("%w: value of %d bytes is shorter than its header", ErrCorrupt, len(b))
	}
	v = Version{Timestamp: binary.BigEndian.Uint64(b), Node: binary.BigEndian.Uint32(b[8:])}
	flags := b[12]
	if flags&^flagTombstone != 0 {
		return Version{}, false, nil, fmt.Errorf("%w: unknown value flags %#x", ErrCorrupt, flags)
	}
	tombstone = flags&flagTombstone != 0
	if rest := b[valueHeaderLen:]; len(rest) > 0 {
		if tombstone {
			return Version{}, false, nil, fmt.Errorf("%w: tombstone carries %d value bytes", ErrCorrupt, len(rest))
		}
		value = rest
	}
	return v, tombstone, value, nil
}

// ownedRecord decodes a stored value into a Record that shares nothing with
// pebble's buffers.
func ownedRecord(key, stored []byte) (Record, error) {
	v, tomb, value, err := decodeValue(stored)
	if err != nil {
		return Record{}, fmt.Errorf("key %q: %w", key, err)
	}
	return makeRecord(key, value, v, tomb), nil
}

// makeRecord copies key and value into one fresh allocation. The value is nil
// when empty or for a tombstone, which is how both engines return records.
func makeRecord(key, value []byte, v Version, tombstone bool) Record {
	if tombstone {
		value = nil
	}
	buf := make([]byte, len(key)+len(value))
	copy(buf, key)
	copy(buf[len(key):], value)
	rec := Record{Key: buf[:len(key):len(key)], Version: v, Tombstone: tombstone}
	if len(value) > 0 {
		rec.Value = buf[len(key):]
	}
	return rec
}
