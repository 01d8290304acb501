package storage

import (
	"sync"

	"github.com/cockroachdb/pebble/vfs"
)

// FS is the filesystem an engine lives on (pebble's vfs.FS). It is named
// here so that callers can pass one through Options, and a node through its
// configuration, without importing pebble.
type FS = vfs.FS

// PowerCutFS is an in-memory filesystem for power-cut tests. Like a disk
// without a battery-backed cache, it keeps across a simulated power cut only
// what was synced before it: file contents written but not synced, and files
// created, renamed or removed in a directory that was not synced afterwards,
// are lost (pebble's vfs.NewStrictMem).
//
// A cut happens in three steps, because the engine on the filesystem must
// be shut down before it restarts and, in between, must not acknowledge
// anything the cut lost:
//
//  1. CutPower: from this instant nothing becomes durable. A sync in
//     progress finishes first (it happened before the cut); every later one
//     blocks, so nothing that waits for a sync is acknowledged.
//  2. The caller takes the engine's owner off the network, then calls
//     ReleaseSyncs: the blocked syncs return without effect and the engine
//     can be closed.
//  3. Restart, once the engine is closed: what was not synced before the
//     cut is discarded and the filesystem works normally again, ready for
//     the engine to be reopened on it.
//
// It is safe for concurrent use.
type PowerCutFS struct {
	vfs.FS // the strict in-memory filesystem

	mem *vfs.MemFS

	// mu is held shared by every sync and exclusively by CutPower, so that
	// a sync either completes before the cut or blocks after it.
	mu       sync.RWMutex
	cut      bool
	released chan struct{} // closed by ReleaseSyncs
}

var _ vfs.FS = (*PowerCutFS)(nil)

// NewPowerCutFS returns an empty, powered filesystem.
func NewPowerCutFS() *PowerCutFS {
	mem := vfs.NewStrictMem()
	return &PowerCutFS{FS: mem, mem: mem, released: make(chan struct{})}
}

// CutPower simulates a power cut at this instant (step 1 above). Calling it
// twice before Restart is a no-op.
func (f *PowerCutFS) CutPower() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut = true
	f.mem.SetIgnoreSyncs(true)
}

// ReleaseSyncs lets the syncs blocked since CutPower, and any later ones,
// return without effect (step 2 above).
func (f *PowerCutFS) ReleaseSyncs() {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.released:
	default:
		close(f.released)
	}
}

// Restart discards everything not synced before CutPower and powers the
// filesystem on again (step 3 above). The engine that ran on it must be
// closed first. Without a preceding CutPower it cuts the power itself.
func (f *PowerCutFS) Restart() {
	f.CutPower()
	f.ReleaseSyncs() // no sync may stay blocked on a channel nobody closes
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mem.ResetToSyncedState()
	f.mem.SetIgnoreSyncs(false)
	f.cut = false
	f.released = make(chan struct{})
}

// sync runs do unless the power is cut; after the cut it waits for
// ReleaseSyncs and does nothing.
func (f *PowerCutFS) sync(do func() error) error {
	f.mu.RLock()
	if !f.cut {
		defer f.mu.RUnlock()
		return do()
	}
	released := f.released
	f.mu.RUnlock()
	<-released
	return nil
}

func (f *PowerCutFS) wrap(file vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return powerCutFile{File: file, fs: f}, nil
}

// Create implements vfs.FS.
func (f *PowerCutFS) Create(name string) (vfs.File, error) { return f.wrap(f.FS.Create(name)) }

// Open implements vfs.FS.
func (f *PowerCutFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	return f.wrap(f.FS.Open(name, opts...))
}

// OpenReadWrite implements vfs.FS.
func (f *PowerCutFS) OpenReadWrite(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	return f.wrap(f.FS.OpenReadWrite(name, opts...))
}

// OpenDir implements vfs.FS.
func (f *PowerCutFS) OpenDir(name string) (vfs.File, error) { return f.wrap(f.FS.OpenDir(name)) }

// ReuseForWrite implements vfs.FS.
func (f *PowerCutFS) ReuseForWrite(oldname, newname string) (vfs.File, error) {
	return f.wrap(f.FS.ReuseForWrite(oldname, newname))
}

// powerCutFile routes a file's syncs through its filesystem's power switch.
type powerCutFile struct {
	vfs.File
	fs *PowerCutFS
}

func (p powerCutFile) Sync() error     { return p.fs.sync(p.File.Sync) }
func (p powerCutFile) SyncData() error { return p.fs.sync(p.File.SyncData) }

func (p powerCutFile) SyncTo(length int64) (fullSync bool, err error) {
	err = p.fs.sync(func() error {
		fullSync, err = p.File.SyncTo(length)
		return err
	})
	return fullSync, err
}
