package node

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"sort"
	"strings"
)

// The kubelet creates its KUBE-* canary and hint chains even with makeIPTablesUtilChains off,
// and CNI plugins create CNI-* chains; the node takes an iptables-save snapshot before it starts
// and removes, on Stop, the chains with these prefixes that appeared and the rules that jump to
// them or name the node's bridge or pod range. Rules anything else added meanwhile are left
// alone.
var ownedChainPrefixes = []string{"KUBE-", "CNI-"}

// ruleset is one iptables-save snapshot: per table, its chains and its rules ("-A ..." lines).
type ruleset map[string]*table

type table struct {
	chains map[string]bool
	rules  []string
}

// iptablesBinaries are the families the kubelet touches.
var iptablesBinaries = []string{"iptables", "ip6tables"}

// saveIPTables snapshots every family. A family whose tools are missing is skipped.
func saveIPTables(ctx context.Context) (map[string]ruleset, error) {
	snap := map[string]ruleset{}
	for _, bin := range iptablesBinaries {
		if _, err := lookPath(bin + "-save"); err != nil {
			continue
		}
		out, err := run(ctx, bin+"-save")
		if err != nil {
			return nil, err
		}
		snap[bin] = parseIPTablesSave(out)
	}
	return snap, nil
}

func parseIPTablesSave(out []byte) ruleset {
	rs := ruleset{}
	var cur *table
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1024*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "*"):
			cur = &table{chains: map[string]bool{}}
			rs[line[1:]] = cur
		case cur == nil:
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			cur.chains[name] = true
		case strings.HasPrefix(line, "-A "):
			cur.rules = append(cur.rules, line)
		}
	}
	return rs
}

// restoreIPTables removes what the node added between before and now, with one
// iptables-restore --noflush per family: first the added rules in chains that existed before,
// then the added chains (flushed, then deleted, so chains that jump to each other go too).
func restoreIPTables(ctx context.Context, before map[string]ruleset, mentions []string) error {
	after, err := saveIPTables(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for bin, now := range after {
		script := cleanupScript(before[bin], now, mentions)
		if script == "" {
			continue
		}
		restore, err := lookPath(bin + "-restore")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cmd := exec.CommandContext(ctx, restore, "--noflush", "-w")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("%s-restore: %v: %s\nscript:\n%s", bin, err, out, script))
		}
	}
	return errors.Join(errs...)
}

// cleanupScript is the iptables-restore input undoing the node's additions, "" when none.
func cleanupScript(before, now ruleset, mentions []string) string {
	var b strings.Builder
	tables := make([]string, 0, len(now))
	for name := range now {
		tables = append(tables, name)
	}
	sort.Strings(tables)
	for _, name := range tables {
		t := now[name]
		old := before[name]
		if old == nil {
			old = &table{chains: map[string]bool{}}
		}
		var added []string
		for chain := range t.chains {
			if !old.chains[chain] && owned(chain) {
				added = append(added, chain)
			}
		}
		sort.Strings(added)
		oldRules := map[string]bool{}
		for _, r := range old.rules {
			oldRules[r] = true
		}
		var deletes []string
		for _, r := range t.rules {
			chain := strings.Fields(r)[1]
			// Pre-existing, or in a chain that is deleted as a whole. A built-in chain (INPUT,
			// PREROUTING, ...) is absent from a snapshot taken while its table was not loaded
			// (iptables-nft lists no table that has no rules), yet it is not the node's.
			if oldRules[r] || slices.Contains(added, chain) {
				continue
			}
			if ours(r, added, mentions) {
				deletes = append(deletes, "-D"+strings.TrimPrefix(r, "-A"))
			}
		}
		if len(added) == 0 && len(deletes) == 0 {
			continue
		}
		fmt.Fprintf(&b, "*%s\n", name)
		for _, d := range deletes {
			fmt.Fprintln(&b, d)
		}
		for _, c := range added {
			fmt.Fprintf(&b, "-F %s\n", c)
		}
		for _, c := range added {
			fmt.Fprintf(&b, "-X %s\n", c)
		}
		fmt.Fprintln(&b, "COMMIT")
	}
	return b.String()
}

func owned(chain string) bool {
	for _, p := range ownedChainPrefixes {
		if strings.HasPrefix(chain, p) {
			return true
		}
	}
	return false
}

// ours reports whether a rule the node's run added to a pre-existing chain belongs to the node:
// it jumps to one of the node's chains or names its bridge or pod range.
func ours(rule string, chains, mentions []string) bool {
	fields := strings.Fields(rule)
	for i, f := range fields {
		if (f == "-j" || f == "-g") && i+1 < len(fields) {
			for _, c := range chains {
				if fields[i+1] == c {
					return true
				}
			}
		}
	}
	for _, m := range mentions {
		if strings.Contains(rule, m) {
			return true
		}
	}
	return false
}

// leftoverIPTables lists the rules and chains in now, but not in before, that belong to the node:
// what restoreIPTables could not remove.
func leftoverIPTables(before, now map[string]ruleset, mentions []string) []string {
	var left []string
	for bin, rs := range now {
		for _, line := range strings.Split(cleanupScript(before[bin], rs, mentions), "\n") {
			if strings.HasPrefix(line, "-D ") || strings.HasPrefix(line, "-X ") {
				left = append(left, bin+": "+line)
			}
		}
	}
	sort.Strings(left)
	return left
}
