package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/utils/ptr"
)

// Stop stops everything Start started and undoes its changes to the host: pods first (so the
// kubelet tears down their sandboxes and network), then the kubelet, containerd and its shims,
// the control plane; then mounts, cgroups, the bridge, CNI state, iptables additions, sysctls,
// envtest's directories in the temp directory, and the node's directory. It is safe to call
// more than once and after a failed Start. When something could not be cleaned up, the error
// says what, and the component logs are kept.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() { n.stopErr = n.stop() })
	return n.stopErr
}

func (n *Node) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	total := time.Now()
	var errs []error
	step := func(name string, fn func() error) {
		began := time.Now()
		if err := fn(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		if d := time.Since(began); d > 100*time.Millisecond {
			n.logf("node: stop %-28s %6.1fs", name, d.Seconds())
		}
	}

	// No new pods land on the node while it drains.
	step("kube-scheduler", func() error { return n.stopProcess("kube-scheduler") })
	step("delete pods", func() error { return n.deletePods(ctx) })
	step("kubelet", func() error { return n.stopProcess("kubelet") })
	step("containers", func() error {
		if n.running("containerd") {
			return n.killTasks(ctx)
		}
		return nil
	})
	step("containerd", func() error {
		err := n.stopProcess("containerd")
		return errors.Join(err, killShims(n.containerd.Socket))
	})
	step("kube-controller-manager", func() error { return n.stopProcess("kube-controller-manager") })
	step("coredns", func() error { return n.stopProcess("coredns") })
	step("kube-apiserver", func() error {
		var err error
		if n.Env != nil {
			err = n.Env.Stop()
		}
		if n.apiserverLog != nil {
			_ = n.apiserverLog.Close()
		}
		return err
	})
	step("leftover processes", n.killLeftovers)
	step("cgroups", func() error {
		if !n.cgroup {
			return nil
		}
		return removeCgroupRoot(n.cgroupRoot)
	})
	step("mounts", func() error { return unmountAll(n.Dir) })
	step("bridge", func() error {
		if !n.bridge {
			return nil
		}
		return deleteBridge(ctx, n.opts.Bridge)
	})
	step("CNI state", func() error { return removeCNICache(n.Dir) })
	step("iptables", func() error {
		if n.iptables == nil {
			return nil
		}
		mentions := []string{n.opts.Bridge, n.opts.PodCIDR, cniNetwork}
		if err := restoreIPTables(ctx, n.iptables, mentions); err != nil {
			return err
		}
		now, err := saveIPTables(ctx)
		if err != nil {
			return err
		}
		if left := leftoverIPTables(n.iptables, now, mentions); len(left) > 0 {
			return fmt.Errorf("rules the node added are still there:\n%s", strings.Join(left, "\n"))
		}
		return nil
	})
	step("sysctls", func() error {
		if n.sysctls == nil {
			return nil
		}
		restored, err := restoreSysctls(n.sysctls)
		if len(restored) > 0 {
			n.logf("node: restored %s", strings.Join(restored, ", "))
		}
		return err
	})
	step("host directories", n.removeHostDirs)
	step("envtest temp directories", n.removeTempDirs)

	err := errors.Join(errs...)
	if err != nil || n.keepLogs {
		kept := n.Dir + "-logs"
		if renameErr := os.Rename(n.logDir, kept); renameErr == nil {
			n.logf("node: component logs kept in %s", kept)
		}
	}
	if err == nil {
		err = os.RemoveAll(n.Dir)
	} else {
		n.logf("node: left %s in place for inspection", n.Dir)
	}
	n.logf("node: %-33s %6.1fs", "stopped", time.Since(total).Seconds())
	unlockBridge(n.lock)
	if err != nil {
		return fmt.Errorf("stopping the node: %w", err)
	}
	return nil
}

func (n *Node) running(name string) bool {
	p, ok := n.procs[name]
	return ok && p.exited() == nil
}

func (n *Node) stopProcess(name string) error {
	p, ok := n.procs[name]
	if !ok {
		return nil
	}
	return p.stop()
}

// deletePods deletes every pod bound to the node and waits for the kubelet to finish them, so
// their containers, sandboxes, volumes and CNI attachments go the normal way.
func (n *Node) deletePods(ctx context.Context) error {
	if n.Clientset == nil || !n.running("kubelet") {
		return nil
	}
	onNode := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", n.Name).String()}
	pods, err := n.Clientset.CoreV1().Pods("").List(ctx, onNode)
	if err != nil {
		return err
	}
	if len(pods.Items) == 0 {
		return nil
	}
	for _, pod := range pods.Items {
		// A short grace period: `sh` as PID 1 ignores SIGTERM and would hold each pod for 30s.
		err := n.Clientset.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)})
		if err != nil && !isNotFound(err) {
			return err
		}
	}
	var left int
	err = n.poll(ctx, 2*time.Minute, func(ctx context.Context) (bool, error) {
		pods, err := n.Clientset.CoreV1().Pods("").List(ctx, onNode)
		if err != nil {
			return false, err
		}
		left = len(pods.Items)
		return left == 0, nil
	})
	if err != nil {
		// Not fatal: the containers are killed through containerd next.
		n.logf("node: %d pods still on the node after deleting them (%v); killing their containers", left, err)
	}
	return nil
}

// killLeftovers kills any process whose command line still names the node's directory (a
// component or shim that survived its stop); only the node's own processes can. It repeats
// until none is left: after a crashed run, a containerd or kubelet still shutting down on its
// Pdeathsig can start a shim or runc between two passes.
func (n *Node) killLeftovers() error {
	var killed []int
	for pass := 0; pass < 20; pass++ {
		pids := ProcessesMentioning(n.Dir)
		if len(pids) == 0 {
			if len(killed) > 0 {
				n.logf("node: killed leftover processes %v", killed)
			}
			return nil
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		for _, pid := range pids {
			waitGone(pid)
		}
		killed = append(killed, pids...)
	}
	var desc []string
	for _, pid := range ProcessesMentioning(n.Dir) {
		stat, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		desc = append(desc, strings.TrimSpace(string(stat)))
	}
	return fmt.Errorf("processes keep appearing or survive SIGKILL:\n%s", strings.Join(desc, "\n"))
}

// removeHostDirs removes the global directories the components created (they did not exist
// before Start), provided they hold nothing but directories, sockets and symlinks into the
// node's directory: anything else was put there by someone else and is left alone.
func (n *Node) removeHostDirs() error {
	var errs []error
	dirs := make([]string, 0, len(n.hostDirs))
	for d := range n.hostDirs {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	for _, d := range dirs {
		if _, err := os.Lstat(d); os.IsNotExist(err) {
			continue
		}
		var foreign []string
		_ = filepath.WalkDir(d, func(path string, e fs.DirEntry, err error) error {
			switch {
			case err != nil || e.IsDir() || e.Type()&fs.ModeSocket != 0:
			case e.Type()&fs.ModeSymlink != 0:
				if target, _ := os.Readlink(path); !strings.HasPrefix(target, n.Dir+"/") {
					foreign = append(foreign, path)
				}
			default:
				foreign = append(foreign, path)
			}
			return nil
		})
		if len(foreign) > 0 {
			errs = append(errs, fmt.Errorf("%s did not exist before the node started but now holds %s: left in place", d, strings.Join(foreign, ", ")))
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Leftovers lists what a stopped node left on the host: processes naming its directory,
// mounts under it, the directory itself, envtest's directories beside it, its bridge, and
// sysctls that differ from before Start.
// Empty after a clean Stop; suites assert it (issue 6: everything started is cleaned).
func (n *Node) Leftovers() []string {
	var out []string
	if pids := ProcessesMentioning(n.Dir); len(pids) > 0 {
		out = append(out, fmt.Sprintf("processes %v still name %s", pids, n.Dir))
	}
	if mounts, err := MountsUnder(n.Dir); err != nil || len(mounts) > 0 {
		out = append(out, fmt.Sprintf("mounts under %s: %v %v", n.Dir, mounts, err))
	}
	if _, err := os.Stat(n.Dir); err == nil {
		out = append(out, n.Dir+" still exists")
	}
	for _, d := range n.tempDirs {
		if _, err := os.Lstat(d); err == nil {
			out = append(out, d+" (envtest's) still exists")
		}
	}
	if _, err := net.InterfaceByName(n.opts.Bridge); err == nil {
		out = append(out, "bridge "+n.opts.Bridge+" still exists")
	}
	now := readSysctls()
	for key, before := range n.sysctls {
		if now[key] != before {
			out = append(out, fmt.Sprintf("sysctl %s is %s, was %s", key, now[key], before))
		}
	}
	return out
}
