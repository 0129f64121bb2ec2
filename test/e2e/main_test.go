//go:build e2e

// Package e2e_test runs harbor-connector on a real single node (kube-apiserver, etcd,
// controller-manager, scheduler, kubelet and containerd on this machine, test/node) against
// the test Harbor, and checks what only a kubelet does: pulls of rewritten images through the
// node listener, CSI inline volumes and their republished tokens, real clients in containers
// using only what was injected. Run with `make e2e` (root: it creates a bridge and mounts).
package e2e_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// The suite's world, set up once in TestMain.
var w *world

func TestMain(m *testing.M) { run(m) }

// run exits the process itself, after the teardown, with the tests' code or 1 on a leftover.
func run(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "the e2e suite runs a kubelet and containerd: run it as root (make e2e)")
		os.Exit(1)
	}
	// Warnings the API server returns to the suite's client are printed, not swallowed.
	ctrllog.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	timer := &phases{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var err error
	w, err = setUp(ctx, timer)
	code := 1
	defer func() {
		// Issue 6: everything the suite started is stopped and cleaned; a leftover fails the run.
		if err := timer.run("teardown: product, node, Harbor", func() error { return w.tearDown() }); err != nil {
			code = 1
		}
		if w.node != nil {
			if left := w.node.Leftovers(); len(left) > 0 {
				fmt.Fprintln(os.Stderr, "FAIL: the suite left on the host:", left)
				code = 1
			}
		}
		timer.print()
		os.Exit(code)
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "setting up the e2e world:", err)
		w.dumpLogs()
		return
	}
	code = m.Run()
	if code != 0 {
		w.dumpLogs()
	}
}

// phases times the suite's steps and prints them at the end (TESTING.md "Time budget").
type phases struct{ done []string }

func (p *phases) run(name string, f func() error) error {
	start := time.Now()
	fmt.Printf("== e2e: %s\n", name)
	err := f()
	status := "ok"
	if err != nil {
		status = "FAILED: " + err.Error()
	}
	line := fmt.Sprintf("%-48s %6.1fs  %s", name, time.Since(start).Seconds(), status)
	p.done = append(p.done, line)
	fmt.Println("== e2e: " + line)
	return err
}

func (p *phases) print() {
	fmt.Println("== e2e phase durations ==")
	for _, l := range p.done {
		fmt.Println(l)
	}
}
