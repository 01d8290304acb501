package replication

import (
	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/storage"
)

// RecordToPB converts a stored record to its wire form. The byte slices are
// shared, not copied.
func RecordToPB(r storage.Record) *kvpb.Record {
	return &kvpb.Record{
		Key:       r.Key,
		Value:     r.Value,
		Version:   VersionToPB(r.Version),
		Tombstone: r.Tombstone,
	}
}

// RecordFromPB converts a wire record; a nil record is the zero Record.
func RecordFromPB(r *kvpb.Record) storage.Record {
	if r == nil {
		return storage.Record{}
	}
	return storage.Record{
		Key:       r.GetKey(),
		Value:     r.GetValue(),
		Version:   VersionFromPB(r.GetVersion()),
		Tombstone: r.GetTombstone(),
	}
}

// VersionToPB converts a version to its wire form.
func VersionToPB(v storage.Version) *kvpb.Version {
	return &kvpb.Version{Timestamp: v.Timestamp, Node: v.Node}
}

// VersionFromPB converts a wire version; nil is the zero version.
func VersionFromPB(v *kvpb.Version) storage.Version {
	return storage.Version{Timestamp: v.GetTimestamp(), Node: v.GetNode()}
}
