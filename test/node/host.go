package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/wait"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct{ point, fsType string }

// readMounts parses /proc/self/mountinfo, in its order (parents before children, older before
// newer mounts on the same point).
func readMounts() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1024*1024), 1024*1024)
	for sc.Scan() {
		// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": field 5 is the
		// mount point, with spaces and the like octal-escaped; the type follows " - ".
		pre, post, _ := strings.Cut(sc.Text(), " - ")
		fields, after := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 {
			continue
		}
		e := mountEntry{point: unescapeMountinfo(fields[4])}
		if len(after) > 0 {
			e.fsType = after[0]
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// MountsUnder lists the mount points at or below dir, deepest (latest mounted) first.
func MountsUnder(dir string) ([]string, error) {
	all, err := readMounts()
	var mounts []string
	// Undo in reverse of mountinfo's order.
	for i := len(all) - 1; i >= 0; i-- {
		if mp := all[i].point; mp == dir || strings.HasPrefix(mp, dir+"/") {
			mounts = append(mounts, mp)
		}
	}
	return mounts, err
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountAll unmounts everything under dir, deepest first, lazily as a last resort (a mount
// still busy because a process has a file open under it).
func unmountAll(dir string) error {
	for range 5 { // stacked mounts (the kubelet bind-mounts its root onto itself) need passes
		mounts, err := MountsUnder(dir)
		if err != nil || len(mounts) == 0 {
			return err
		}
		for _, mp := range mounts {
			if err := unix.Unmount(mp, 0); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				_ = unix.Unmount(mp, unix.MNT_DETACH)
			}
		}
	}
	mounts, err := MountsUnder(dir)
	if err == nil && len(mounts) > 0 {
		err = fmt.Errorf("still mounted after unmounting: %s", strings.Join(mounts, ", "))
	}
	return err
}

// cgroupHierarchies are the mounted cgroup v1 hierarchies (this host runs cgroup v1 with a
// cgroup2 "unified" mount beside them: TESTING.md "A real node"), by mount point.
func cgroupHierarchies() ([]string, error) {
	all, err := readMounts()
	var dirs []string
	for _, m := range all {
		if m.fsType == "cgroup" || m.fsType == "cgroup2" {
			dirs = append(dirs, m.point)
		}
	}
	return dirs, err
}

// createCgroupRoot creates the cgroup the kubelet puts every pod under (cgroupRoot) in each v1
// hierarchy. Owning it means Stop can find every container process by cgroup, and removing it
// leaves no kubepods cgroups behind on the host.
func createCgroupRoot(name string) error {
	hierarchies, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	for _, h := range hierarchies {
		if isCgroup2(h) {
			continue
		}
		dir := filepath.Join(h, name)
		if _, err := os.Stat(dir); err == nil {
			return fmt.Errorf("cgroup %s already exists: a previous run did not clean up "+
				"(kill the processes in %s/cgroup.procs, then rmdir it and its subdirectories) or choose another Options.Bridge", dir, dir)
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fmt.Errorf("creating cgroup %s: %w", dir, err)
		}
		// A new cpuset cgroup starts with no CPUs and no memory nodes, and nothing can join it
		// or its children until they are set: inherit the parent's.
		for _, file := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(h, file)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, file), v, 0o644); err != nil {
					return fmt.Errorf("setting %s/%s: %w", dir, file, err)
				}
			}
		}
	}
	return nil
}

func isCgroup2(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// removeCgroupRoot kills every process left in the node's cgroup tree (only containers the node
// started run there) and removes the tree, deepest first, in every hierarchy.
func removeCgroupRoot(name string) error {
	hierarchies, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range hierarchies {
		root := filepath.Join(h, name)
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, dir := range dirs {
			if err := removeCgroup(dir); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func removeCgroup(dir string) error {
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		for _, pid := range cgroupPIDs(dir) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		last = os.Remove(dir)
		return last == nil || os.IsNotExist(last), nil
	})
	if err != nil {
		return fmt.Errorf("removing cgroup %s (pids %v): %w", dir, cgroupPIDs(dir), last)
	}
	return nil
}

func cgroupPIDs(dir string) []int {
	data, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// ProcessesMentioning returns the PIDs whose command line (NUL-separated arguments) contains s,
// other than this process: the node's directory or containerd socket, or a test's container.
func ProcessesMentioning(s string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// cmdlineArg returns the value after flag in a process's NUL-separated command line.
func cmdlineArg(pid int, flag string) string {
	cmdline, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	args := strings.Split(string(cmdline), "\x00")
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}
