package csi

import (
	"bytes"
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

// WriteInPlace makes dir/name hold data, where dir is a real directory that is created once and
// never replaced (not a link into ..data): a bind mount of dir, which is what the kubelet makes of
// a subPath mount of a directory, sees every update. data goes to a temporary file in dir that is
// renamed over name, so a reader opens the old file or the new one, never a part of either. The
// temporary name, ".<name>.<random>.tmp", ends in none of the suffixes containers/image reads in
// a certs.d directory (.crt, .cert, .key).
func WriteInPlace(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	target := filepath.Join(dir, name)
	if cur, err := os.ReadFile(target); err == nil && bytes.Equal(cur, data) {
		return nil
	}
	// Left by a publish that failed between writing and renaming.
	stale, _ := filepath.Glob(filepath.Join(dir, "."+name+".*.tmp"))
	for _, s := range stale {
		_ = os.Remove(s)
	}
	tmp, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o644) // as WriteAtomically's files: readable whatever the pod's UID
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), target)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("replacing %s: %w", target, err)
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
