package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/wait"
)

// containerdConfig is the node's own containerd configuration (containerd 2.3 and later: config
// version 4): every path containerd and its shims write (root, state, sockets, runc state,
// registry hosts, CNI config) is under the node's directory, so it never touches a system
// containerd and Stop can remove all of it. Since version 3 the CRI plugin has two parts:
// images (io.containerd.cri.v1.images: snapshotter, the pinned sandbox image, registry hosts)
// and runtime (io.containerd.cri.v1.runtime: runtimes, CNI); io.containerd.grpc.v1.cri is only
// the gRPC service. Version 4 moves the server sockets into plugins, and the ttrpc socket no
// longer follows the gRPC one: it is set here, or it would be /run/containerd/containerd.sock.ttrpc.
var containerdConfig = template.Must(template.New("containerd").Parse(`version = 4
root = "{{.Root}}"
state = "{{.State}}"
# Snapshotters the node does not use and that cannot work here without more setup (a scratch
# file, mkfs.erofs) only log at startup.
disabled_plugins = ["io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs"]

[plugins."io.containerd.server.v1.grpc"]
  address = "{{.Socket}}"

[plugins."io.containerd.server.v1.ttrpc"]
  address = "{{.Socket}}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{{.Opt}}"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "{{.Snapshotter}}"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{{.SandboxImage}}"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "{{.CertsDir}}"

[plugins."io.containerd.cri.v1.runtime"]
  # root lacks CAP_SYS_RESOURCE here: without this every sandbox fails with "can't get final
  # child's PID from pipe" (TESTING.md "A real node").
  restrict_oom_score_adj = true
  # Pod network namespaces are mounted under state (in the node's directory), not /run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      # The shim beside this containerd, not one found in PATH (a host may have an older one).
      runtime_path = "{{.Shim}}"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        # cgroup v1 without systemd as PID 1 on this host (the kubelet's cgroupDriver matches).
        SystemdCgroup = false
        Root = "{{.RuncRoot}}"
        BinaryName = "{{.Runc}}"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{{.CNIBinDir}}"]
    conf_dir = "{{.CNIConfDir}}"
`))

type containerdPaths struct {
	Root, State, Socket, Opt, RuncRoot, CertsDir string
	CNIBinDir, CNIConfDir                        string
	SandboxImage, Snapshotter                    string
	// Runtime is test/tools/node-deps.sh's directory: bin/ (containerd, ctr, the shim, runc)
	// and cni/ (the plugins). Runc is the runc containerd's shims run.
	Runtime, Runc, Shim string
}

func newContainerdPaths(dir, runtime string) containerdPaths {
	base := filepath.Join(dir, "containerd")
	return containerdPaths{
		Runtime:    runtime,
		Runc:       filepath.Join(runtime, "bin", "runc"),
		Shim:       filepath.Join(runtime, "bin", "containerd-shim-runc-v2"),
		Root:       filepath.Join(base, "root"),
		State:      filepath.Join(base, "state"),
		Socket:     filepath.Join(base, "containerd.sock"),
		Opt:        filepath.Join(base, "opt"),
		RuncRoot:   filepath.Join(base, "runc"),
		CertsDir:   filepath.Join(base, "certs.d"),
		CNIBinDir:  filepath.Join(runtime, "cni"),
		CNIConfDir: filepath.Join(dir, "cni", "net.d"),
	}
}

// writeContainerdConfig writes config.toml and, for each registry CA, a certs.d hosts.toml
// telling containerd to trust that CA for that registry.
func writeContainerdConfig(p containerdPaths, registryCAs map[string]string) (string, error) {
	for _, d := range []string{p.Root, p.State, p.Opt, p.RuncRoot, p.CertsDir} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return "", err
		}
	}
	for host, caFile := range registryCAs {
		if err := writeRegistryHost(p.CertsDir, host, caFile); err != nil {
			return "", err
		}
	}
	path := filepath.Join(filepath.Dir(p.Socket), "config.toml")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := containerdConfig.Execute(f, p); err != nil {
		return "", err
	}
	return path, f.Close()
}

// writeRegistryHost writes certs.d/<host>/hosts.toml with a copy of the CA next to it, so the
// node does not depend on the caller's file staying in place.
func writeRegistryHost(certsDir, host, caFile string) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("registry CA for %s: %w", host, err)
	}
	dir := filepath.Join(certsDir, host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, pem, 0o644); err != nil {
		return err
	}
	hosts := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n  ca = %q\n",
		"https://"+host, "https://"+host, ca)
	return os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hosts), 0o644)
}

// overlaySupported reports whether an overlay mount works in dir (containerd's default
// snapshotter); when it does not, the node falls back to the native (copying) snapshotter.
func overlaySupported(dir string) bool {
	base, err := os.MkdirTemp(dir, "overlay-check-")
	if err != nil {
		return false
	}
	defer os.RemoveAll(base)
	var d [4]string
	for i, name := range []string{"lower", "upper", "work", "merged"} {
		d[i] = filepath.Join(base, name)
		if err := os.Mkdir(d[i], 0o755); err != nil {
			return false
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", d[0], d[1], d[2])
	if err := unix.Mount("overlay", d[3], "overlay", 0, opts); err != nil {
		return false
	}
	return unix.Unmount(d[3], 0) == nil
}

// ctr runs the containerd CLI against the node's containerd, in the namespace the CRI uses.
func (n *Node) ctr(ctx context.Context, args ...string) ([]byte, error) {
	return run(ctx, filepath.Join(n.containerd.Runtime, "bin", "ctr"), append([]string{"--address", n.ContainerdSocket, "--namespace", "k8s.io"}, args...)...)
}

// waitContainerd waits until containerd answers and its CRI plugin loaded: a CRI plugin that
// fails to load (a bad config line) would otherwise only show as a kubelet that never gets ready.
func (n *Node) waitContainerd(ctx context.Context, p *process) error {
	last := errors.New("containerd did not answer")
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := p.exited(); err != nil {
			return false, err
		}
		// ctr blocks for seconds dialling a socket that is not there yet.
		if _, err := os.Stat(n.ContainerdSocket); err != nil {
			last = err
			return false, nil
		}
		out, err := n.ctr(ctx, "plugins", "ls")
		if err != nil {
			last = err
			return false, nil
		}
		// containerd 2.x's CRI is three plugins: the gRPC service and its images and runtime
		// parts; each must have loaded.
		found := 0
		for _, line := range strings.Split(string(out), "\n") {
			// "TYPE ID PLATFORMS STATUS"
			f := strings.Fields(line)
			if len(f) < 3 || !(f[0] == "io.containerd.grpc.v1" && f[1] == "cri" || f[0] == "io.containerd.cri.v1") {
				continue
			}
			if f[len(f)-1] != "ok" {
				return false, fmt.Errorf("containerd's CRI plugin %s did not load (%s); last lines of %s:\n%s", f[0]+"."+f[1], line, p.log, Tail(p.log, 30))
			}
			found++
		}
		if found >= 3 {
			return true, nil
		}
		last = fmt.Errorf("%d of the 3 CRI plugins in `ctr plugins ls` yet", found)
		return false, nil
	})
	if wait.Interrupted(err) {
		return fmt.Errorf("%w: %v; last lines of %s:\n%s", err, last, p.log, Tail(p.log, 30))
	}
	return err
}

// killTasks force-deletes every task (container process) left in containerd, through
// containerd, so each shim tears down its container and exits cleanly.
func (n *Node) killTasks(ctx context.Context) error {
	out, err := n.ctr(ctx, "tasks", "ls", "-q")
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range strings.Fields(string(out)) {
		// The CRI plugin deletes a task itself as soon as it exits, so a task may be gone by
		// the time it is deleted here.
		if _, err := n.ctr(ctx, "tasks", "delete", "--force", id); err != nil && !strings.Contains(err.Error(), "not found") {
			errs = append(errs, err)
		}
	}
	var left []string
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		out, err := n.ctr(ctx, "tasks", "ls", "-q")
		left = strings.Fields(string(out))
		return err == nil && len(left) == 0, nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("tasks still there after deleting them: %v", left))
	}
	return errors.Join(errs...)
}

// killShims kills the containerd-shim processes of the node's containerd (their command line
// names its socket) that outlived it, and removes their sockets: a killed shim leaves its
// socket in /run/containerd/s, which is not under the node's directory.
func killShims(socket string) error {
	var errs []error
	for _, pid := range ProcessesMentioning(socket) {
		if cmdlineArg(pid, "-address") != socket {
			continue
		}
		sockets := listeningSockets(pid)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("killing shim %d: %w", pid, err))
			continue
		}
		waitGone(pid)
		for _, s := range sockets {
			if strings.HasPrefix(s, "/run/containerd/") {
				if err := os.Remove(s); err != nil && !os.IsNotExist(err) {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// listeningSockets returns the paths of the unix sockets a process has bound, by matching the
// socket inodes among its file descriptors with /proc/net/unix.
func listeningSockets(pid int) []string {
	fds, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "fd", fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		return nil
	}
	defer f.Close()
	var paths []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "Num RefCount Protocol Flags Type St Inode Path"
		fields := strings.Fields(sc.Text())
		if len(fields) >= 8 && inodes[fields[6]] && strings.HasPrefix(fields[7], "/") {
			paths = append(paths, fields[7])
		}
	}
	return paths
}

// waitGone waits briefly for a killed process to disappear or become a finished zombie (its
// parent, not us, reaps it). A multi-threaded process's leader shows "Z" as soon as its main
// thread exits, while the other threads still tear down and /proc/<pid>/cmdline still reads;
// it is finished once its memory is released and cmdline reads empty.
func waitGone(pid int) {
	_ = wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			return true, nil
		}
		// "pid (comm) S ...": the state follows the last ')'.
		rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
		if !strings.HasPrefix(strings.TrimSpace(rest), "Z") {
			return false, nil
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		return err != nil || len(cmdline) == 0, nil
	})
}
