package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// cniNetwork is the name of the pods' CNI network (host-local keeps its leases under it).
const cniNetwork = "hce2e"

// createBridge creates the host-only bridge the CNI bridge plugin attaches pods to. Its address
// is the node IP: the kubelet refuses a loopback node IP (TESTING.md "A real node").
func createBridge(ctx context.Context, name, cidr string) error {
	if _, err := net.InterfaceByName(name); err == nil {
		return fmt.Errorf("network interface %s already exists: a previous run did not clean up "+
			"(remove it with `ip link del %s` once no test node is running) or choose another Options.Bridge", name, name)
	}
	if _, err := run(ctx, "ip", "link", "add", name, "type", "bridge"); err != nil {
		return err
	}
	if _, err := run(ctx, "ip", "addr", "add", cidr, "dev", name); err != nil {
		return err
	}
	_, err := run(ctx, "ip", "link", "set", name, "up")
	return err
}

// deleteBridge deletes the veths still attached to the bridge (pods the kubelet did not tear
// down), then the bridge itself. A missing bridge is not an error.
func deleteBridge(ctx context.Context, name string) error {
	if _, err := net.InterfaceByName(name); err != nil {
		return nil
	}
	var errs []error
	out, err := run(ctx, "ip", "-o", "link", "show", "master", name)
	if err != nil {
		errs = append(errs, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// "12: veth1234@if3: <BROADCAST,...> ... master hce2e0 ..."
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		veth, _, _ := strings.Cut(strings.TrimSuffix(fields[1], ":"), "@")
		if _, err := run(ctx, "ip", "link", "del", veth); err != nil {
			// A veth goes by itself when its pod's network namespace does: after a crashed run
			// whose leftover processes were just killed, between the listing and the delete.
			if _, gone := net.InterfaceByName(veth); gone != nil {
				continue
			}
			errs = append(errs, err)
		}
	}
	if _, err := run(ctx, "ip", "link", "del", name); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// writeCNIConfig writes the pods' network: the bridge plugin reusing our bridge as the pods'
// gateway, with host-local addresses on podCIDR. ipMasq is off: pods only talk to the host's
// bridge address, and the node must not add NAT rules to the host. containerd adds the
// loopback interface itself (with the loopback plugin from the same bin_dir).
func writeCNIConfig(confDir, ipamDir, bridge, podCIDR, gateway string) error {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       cniNetwork,
		"plugins": []any{map[string]any{
			"type":      "bridge",
			"bridge":    bridge,
			"isGateway": true,
			// Service addresses (10.0.0.0/24) are off the bridge: pods send them to the host,
			// where kube-proxy's rules translate them.
			"isDefaultGateway": true,
			"ipMasq":           false,
			"hairpinMode":      false,
			"ipam": map[string]any{
				"type": "host-local",
				// Leases live under the node's directory, not /var/lib/cni/networks, so they
				// go with it.
				"dataDir": ipamDir,
				"ranges": [][]map[string]string{{{
					"subnet":  podCIDR,
					"gateway": gateway,
				}}},
			},
		}},
	}
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(confDir, "10-"+cniNetwork+".conflist"), data, 0o644)
}

// removeCNICache removes what libcni keeps outside the node's directory for the node's pods,
// which a pod torn down without the kubelet leaves behind: the results cache entries
// ("<network>-<container>-<ifname>") of our network and of containerd's own loopback network
// (recognised by the pod network namespace path in them, which is under the node's
// directory), and host-local leases in case dataDir was ignored.
func removeCNICache(dir string) error {
	var errs []error
	results, _ := os.ReadDir("/var/lib/cni/results")
	for _, e := range results {
		path := filepath.Join("/var/lib/cni/results", e.Name())
		if !strings.HasPrefix(e.Name(), cniNetwork+"-") {
			data, err := os.ReadFile(path)
			if err != nil || !strings.Contains(string(data), dir+"/") {
				continue
			}
		}
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(filepath.Join("/var/lib/cni/networks", cniNetwork)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// sysctls the node changes, directly (ip_forward) or through the kubelet, which sets its
// "kernel tunables" at startup unless protectKernelDefaults is on: saved before and restored
// after, so the host is left as it was.
var savedSysctls = []string{
	"net/ipv4/ip_forward",
	"vm/overcommit_memory",
	"vm/panic_on_oom",
	"kernel/panic",
	"kernel/panic_on_oops",
	"kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes",
}

func readSysctls() map[string]string {
	values := map[string]string{}
	for _, key := range savedSysctls {
		if v, err := os.ReadFile(filepath.Join("/proc/sys", key)); err == nil {
			values[key] = strings.TrimSpace(string(v))
		}
	}
	return values
}

func writeSysctl(key, value string) error {
	return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644)
}

// restoreSysctls writes back every saved value that changed, and returns what it restored.
func restoreSysctls(saved map[string]string) ([]string, error) {
	var errs []error
	var restored []string
	now := readSysctls()
	for key, v := range saved {
		if now[key] == v {
			continue
		}
		if err := writeSysctl(key, v); err != nil {
			errs = append(errs, fmt.Errorf("restoring %s to %s: %w", key, v, err))
			continue
		}
		restored = append(restored, fmt.Sprintf("%s=%s (was %s)", key, v, now[key]))
	}
	sort.Strings(restored)
	return restored, errors.Join(errs...)
}
