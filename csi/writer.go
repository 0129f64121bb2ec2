package csi

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// dataLink is the symlink every visible file resolves through; swapping it publishes a whole new
// set of files at once (the kubelet's AtomicWriter layout).
const dataLink = "..data"

// WriteAtomically makes dir hold exactly files (paths relative to dir). A reader never sees a
// mix of old and new files: the new set is written to a fresh hidden directory, then ..data is
// swapped to it by rename, and visible names are symlinks into ..data.
func WriteAtomically(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	stamp := "..data_" + strconv.FormatInt(time.Now().UnixNano(), 10)
	staging := filepath.Join(dir, stamp)
	for name, data := range files {
		p := filepath.Join(staging, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		// Readable by the pod's user whatever its UID: the files hold the pod's own token only.
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, dataLink))
	tmpLink := filepath.Join(dir, dataLink+"_tmp")
	_ = os.Remove(tmpLink)
	if err := os.Symlink(stamp, tmpLink); err != nil {
		return err
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, dataLink)); err != nil {
		return fmt.Errorf("publishing the new files: %w", err)
	}
	for name := range files {
		top := topLevel(name)
		link := filepath.Join(dir, top)
		if target, err := os.Readlink(link); err == nil && target == filepath.Join(dataLink, top) {
			continue
		}
		if err := os.Symlink(filepath.Join(dataLink, top), link); err != nil && !os.IsExist(err) {
			return err
		}
	}
	if old != "" && old != stamp {
		_ = os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}

func topLevel(name string) string {
	for {
		parent := filepath.Dir(name)
		if parent == "." || parent == "/" {
			return name
		}
		name = parent
	}
}
