package storage

import (
	"errors"
	"fmt"
	"os"

	"github.com/cockroachdb/pebble/vfs"
)

// createDir creates dir and any missing parents on fs (nil: the operating
// system's), syncing the parent of each directory it creates. pebble syncs
// the files and entries inside its directory but not the directory's own
// entry in its parent: without this, a power cut soon after a store is
// created can take the whole directory, and every write acknowledged in
// it, with it.
func createDir(fs vfs.FS, dir string) error {
	if fs == nil {
		fs = vfs.Default
	}
	var missing []string
	for d := dir; ; {
		if _, err := fs.Stat(d); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("storage: stat %s: %w", d, err)
		}
		missing = append(missing, d)
		parent := fs.PathDir(d)
		if parent == d {
			break
		}
		d = parent
	}
	if len(missing) == 0 {
		return nil
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("storage: create %s: %w", dir, err)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		parent := fs.PathDir(missing[i])
		if parent == missing[i] {
			continue
		}
		if err := syncDir(fs, parent); err != nil {
			return fmt.Errorf("storage: create %s: %w", dir, err)
		}
	}
	return nil
}

func syncDir(fs vfs.FS, dir string) error {
	f, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
