package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// stopGrace is how long a component gets to exit after SIGTERM before it is killed.
const stopGrace = 15 * time.Second

// process is one component the node started (containerd, kubelet, ...), writing to its own log.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid once done is closed

	stopping bool // stop was called: exiting is expected
}

// startProcess starts bin with its stdout and stderr in <logDir>/<name>.log.
func startProcess(name, logDir, bin string, args ...string) (*process, error) {
	bin, err := lookPath(bin)
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(logDir, name+".log")
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child holds its own descriptor

	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = componentEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group: a Ctrl-C in the terminal is for the test (a suite that traps
		// SIGINT can then Stop the node in order), not for each component at once.
		Setpgid: true,
		// If the test binary dies without calling Stop (panic, Ctrl-C, go test -timeout), the
		// components shut down rather than outlive it. Containers and their shims do survive
		// that: Start then reports the bridge or cgroup a previous run left.
		Pdeathsig: syscall.SIGTERM,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (%s): %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// componentEnv is the environment of every component: the test's, without proxy settings (the
// components only talk to each other on this host, and a suite that sets HTTPS_PROXY for the
// clients it tests must not route the kubelet or containerd through it), and with the sbin
// directories containerd and the kubelet look up runc, iptables and mount helpers in.
func componentEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(name) {
		case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "PATH":
			continue
		}
		env = append(env, kv)
	}
	path := os.Getenv("PATH")
	for _, dir := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		if !strings.Contains(":"+path+":", ":"+dir+":") {
			path = strings.TrimPrefix(path+":"+dir, ":")
		}
	}
	return append(env, "PATH="+path)
}

// exited reports whether the process has stopped, with an error naming its log.
func (p *process) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v); last lines of %s:\n%s", p.name, p.err, p.log, Tail(p.log, 30))
	default:
		return nil
	}
}

// stop sends SIGTERM, and SIGKILL after stopGrace. Only this process is signalled: its children
// (containerd's shims) are found and stopped by the caller.
func (p *process) stop() error {
	p.stopping = true
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return fmt.Errorf("%s did not stop within %s of SIGTERM and was killed (log: %s)", p.name, stopGrace, p.log)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) survived SIGKILL (log: %s)", p.name, p.cmd.Process.Pid, p.log)
	}
}

// Tail returns the last n lines of a log file, for error messages.
func Tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// run runs a short host command (ip, iptables, ctr, go) and returns its output, failing with
// the output in the error.
func run(ctx context.Context, bin string, args ...string) ([]byte, error) {
	return runIn(ctx, "", nil, bin, args...)
}

func runIn(ctx context.Context, dir string, env []string, bin string, args ...string) ([]byte, error) {
	path, err := lookPath(bin)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = dir
	cmd.Env = append(componentEnv(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String() + "\n" + string(out))
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return out, fmt.Errorf("%s %s: %v: %s", bin, strings.Join(args, " "), err, msg)
		}
		return out, fmt.Errorf("%s %s: %w", bin, strings.Join(args, " "), err)
	}
	return out, nil
}

// waitHealthy waits until a component's health or readiness URL answers 200, failing with the
// last answer and the end of the component's log (unless it exited: poll's error has that).
func (n *Node) waitHealthy(ctx context.Context, name, url string) error {
	// Never through a proxy the suite may have set for the clients it tests.
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	last := "no answer yet"
	err := n.poll(ctx, time.Minute, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		_ = resp.Body.Close()
		last = resp.Status
		return resp.StatusCode == http.StatusOK, nil
	})
	if err == nil {
		return nil
	}
	err = fmt.Errorf("waiting for %s (GET %s: %s): %w", name, url, last, err)
	if p := n.procs[name]; p != nil && p.exited() == nil {
		err = fmt.Errorf("%w; last lines of %s:\n%s", err, p.log, Tail(p.log, 30))
	}
	return err
}
