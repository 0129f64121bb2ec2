package csi

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Each volume is its own tmpfs, as the kubelet does for Secret and projected volumes: the files
// hold the pod's proxy token, and a credential is kept in memory, never on the node's disk (where
// it would outlive the pod in backups, snapshots and reused disks).
//
// The size caps what one volume can pin in node memory; a volume holds a token, a few small
// configuration files and the CA bundle a few times (ca.crt, certs/, containers-ca/), far below it.
const tmpfsOptions = "size=8m,mode=0755"

// mountTmpfs mounts a tmpfs on dir unless one already is (a republish).
func mountTmpfs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	mounted, err := isMountPoint(dir)
	if err != nil || mounted {
		return err
	}
	if err := unix.Mount("connectors-csi", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, tmpfsOptions); err != nil {
		return fmt.Errorf("mounting a tmpfs on %s (the driver needs CAP_SYS_ADMIN and Bidirectional mount propagation to the kubelet's pods directory): %w", dir, err)
	}
	return nil
}

// unmountTmpfs unmounts dir if it is a mount point. Lazily: a container still being torn down
// may hold it open, and the kubelet retries an unpublish until the directory is gone anyway.
func unmountTmpfs(dir string) error {
	mounted, err := isMountPoint(dir)
	if err != nil || !mounted {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmounting %s: %w", dir, err)
	}
	return nil
}

// isMountPoint reports whether dir is on another device than its parent.
func isMountPoint(dir string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	if err := unix.Stat(filepath.Dir(filepath.Clean(dir)), &parent); err != nil {
		return false, &os.PathError{Op: "stat", Path: filepath.Dir(dir), Err: err}
	}
	return st.Dev != parent.Dev, nil
}
