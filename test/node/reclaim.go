package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// A node's run can end without Stop: the test binary is SIGKILLed (go test -timeout is a panic,
// but an OOM kill, a lost session or a CI job cancelled mid-run is not). The components die
// with it (Pdeathsig), but its bridge, cgroups, mounts, iptables rules, changed sysctls and
// envtest's certificate directory in the temp directory stay, and the next run on that machine
// would refuse to start. So every node records, before it changes the host, what Stop needs to
// put the host back (hostStateFile in its directory), and holds a lock per bridge for as long as
// it runs. A Start that gets the lock knows no node on its bridge is alive, and first stops what
// crashed runs on that bridge left, from their records.

const hostStateFile = "host-state.json"

// hostState is what Stop needs to undo a node's changes to the host, written to the node's
// directory before the first change.
type hostState struct {
	Bridge     string                       `json:"bridge"`
	BridgeCIDR string                       `json:"bridgeCIDR"`
	PodCIDR    string                       `json:"podCIDR"`
	Sysctls    map[string]string            `json:"sysctls"`
	IPTables   map[string]map[string]tableJ `json:"iptables"`
	HostDirs   []string                     `json:"hostDirs"`
	// TempDirs are envtest's own directories beside the node's in the temp directory.
	TempDirs []string `json:"tempDirs,omitempty"`
	// Runtime is the node's containerd/runc/CNI directory (node-deps.sh).
	Runtime string `json:"runtime,omitempty"`
}

// tableJ is one iptables table of a saved snapshot.
type tableJ struct {
	Chains []string `json:"chains"`
	Rules  []string `json:"rules"`
}

func (n *Node) writeHostState() error {
	s := hostState{
		Bridge: n.opts.Bridge, BridgeCIDR: n.opts.BridgeCIDR, PodCIDR: n.opts.PodCIDR,
		Sysctls: n.sysctls, IPTables: map[string]map[string]tableJ{},
		Runtime: n.containerd.Runtime,
	}
	for bin, rs := range n.iptables {
		s.IPTables[bin] = map[string]tableJ{}
		for name, t := range rs {
			tj := tableJ{Rules: t.rules}
			for c := range t.chains {
				tj.Chains = append(tj.Chains, c)
			}
			sort.Strings(tj.Chains)
			s.IPTables[bin][name] = tj
		}
	}
	for d := range n.hostDirs {
		s.HostDirs = append(s.HostDirs, d)
	}
	sort.Strings(s.HostDirs)
	s.TempDirs = append([]string(nil), n.tempDirs...)
	sort.Strings(s.TempDirs)
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(n.Dir, hostStateFile), data, 0o600)
}

// crashedNode rebuilds, from a crashed run's directory and record, a Node whose Stop undoes
// everything that run may have changed.
func crashedNode(dir string, s hostState, logf func(string, ...any)) *Node {
	n := &Node{
		Dir:         dir,
		KubeletRoot: filepath.Join(dir, "kubelet"),
		opts:        Options{Bridge: s.Bridge, BridgeCIDR: s.BridgeCIDR, PodCIDR: s.PodCIDR},
		logf:        logf,
		logDir:      filepath.Join(dir, "logs"),
		cgroupRoot:  "/" + s.Bridge,
		containerd:  newContainerdPaths(dir, s.Runtime),
		procs:       map[string]*process{},
		bridge:      true,
		cgroup:      true,
		sysctls:     s.Sysctls,
		iptables:    map[string]ruleset{},
		hostDirs:    map[string]bool{},
	}
	for bin, tables := range s.IPTables {
		rs := ruleset{}
		for name, tj := range tables {
			t := &table{chains: map[string]bool{}, rules: tj.Rules}
			for _, c := range tj.Chains {
				t.chains[c] = true
			}
			rs[name] = t
		}
		n.iptables[bin] = rs
	}
	for _, d := range s.HostDirs {
		n.hostDirs[d] = true
	}
	n.tempDirs = s.TempDirs
	return n
}

// envtestTempPrefixes name the directories envtest makes in the temp directory: webhook
// serving certificates (always, in Environment.Start), and a component's state when its CertDir
// or DataDir is not set (the node sets both inside its directory).
var envtestTempPrefixes = []string{"envtest-serving-certs-", "k8s_test_framework_"}

// envtestTempDirs lists the directories env uses outside the node's directory.
func envtestTempDirs(env *envtest.Environment, nodeDir string) []string {
	var out []string
	candidates := []string{env.WebhookInstallOptions.LocalServingCertDir}
	if api := env.ControlPlane.APIServer; api != nil {
		candidates = append(candidates, api.CertDir)
	}
	if etcd := env.ControlPlane.Etcd; etcd != nil {
		candidates = append(candidates, etcd.DataDir)
	}
	for _, d := range candidates {
		if d != "" && d != nodeDir && !strings.HasPrefix(d, nodeDir+string(filepath.Separator)) {
			out = append(out, d)
		}
	}
	return out
}

// removeTempDirs removes the recorded envtest directories. It removes only what envtest makes:
// a directory (not a symlink) beside the node's own, named with an envtest prefix; anything else
// in a record is reported and left alone.
func (n *Node) removeTempDirs() error {
	var errs []error
	for _, d := range n.tempDirs {
		if !isEnvtestTempDir(d, filepath.Dir(n.Dir)) {
			errs = append(errs, fmt.Errorf("recorded temp directory %s is not one envtest makes in %s: left in place", d, filepath.Dir(n.Dir)))
			continue
		}
		info, err := os.Lstat(d)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !info.IsDir() {
			errs = append(errs, fmt.Errorf("recorded temp directory %s is not a directory: left in place", d))
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func isEnvtestTempDir(dir, tempDir string) bool {
	if filepath.Clean(dir) != dir || filepath.Dir(dir) != tempDir {
		return false
	}
	for _, prefix := range envtestTempPrefixes {
		if rest, ok := strings.CutPrefix(filepath.Base(dir), prefix); ok && rest != "" {
			return true
		}
	}
	return false
}

// ReclaimCrashed cleans up what runs on bridge that ended without Stop left on the host (Start
// does the same first). A test that records the host's state to compare after Stop calls it
// before recording: otherwise it would record what a crashed run left (ip_forward=1, say)
// rather than what the host had before any node.
func ReclaimCrashed(bridge string, logf func(string, ...any)) error {
	lock, err := lockBridge(bridge)
	if err != nil {
		return err
	}
	defer unlockBridge(lock)
	return reclaimCrashed(bridge, logf)
}

// reclaimCrashed stops what crashed runs on bridge left on the host. The caller holds the
// bridge's lock, so no directory recorded for that bridge belongs to a live node.
func reclaimCrashed(bridge string, logf func(string, ...any)) error {
	files, err := filepath.Glob(filepath.Join(os.TempDir(), "hce2e-node-*", hostStateFile))
	if err != nil {
		return err
	}
	var errs []error
	for _, file := range files {
		dir := filepath.Dir(file)
		s, err := loadHostState(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if s.Bridge != bridge {
			continue
		}
		logf("node: a previous run on bridge %s ended without Stop; cleaning up what it left (%s)", bridge, dir)
		if err := crashedNode(dir, s, logf).Stop(); err != nil {
			errs = append(errs, fmt.Errorf("cleaning up after the crashed run in %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

func loadHostState(dir string) (hostState, error) {
	var s hostState
	file := filepath.Join(dir, hostStateFile)
	data, err := os.ReadFile(file)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("%s: %w (stop what that run left by hand, then remove %s)", file, err, dir)
	}
	return s, nil
}

// lockBridge takes the bridge's lock for the node's lifetime (released when the process exits,
// however it exits). The lock file itself stays: removing it could let two runs hold different
// files under one name.
func lockBridge(bridge string) (*os.File, error) {
	path := filepath.Join(os.TempDir(), "hce2e-"+bridge+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder := strings.TrimSpace(readOr(path, "?"))
			return nil, fmt.Errorf("another test node on bridge %s is running (pid %s holds %s): wait for it or choose another Options.Bridge", bridge, holder, path)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("%d\n", os.Getpid())), 0)
	return f, nil
}

func readOr(path, fallback string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fallback
	}
	return string(data)
}

// unlockBridge releases the lock once Stop is done with the host.
func unlockBridge(f *os.File) {
	if f != nil {
		_ = f.Close()
	}
}
