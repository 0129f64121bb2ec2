package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// DefaultCABundle is Debian's bundle of the public CAs (package ca-certificates), the file Go's
// crypto/x509 reads first on Linux. The images copy the build machine's: the registries and
// Harbors the product talks to are verified against it.
const DefaultCABundle = "/etc/ssl/certs/ca-certificates.crt"

// Options say what Build builds.
type Options struct {
	Root     string    // the repository root (where go.mod is)
	Epoch    time.Time // SOURCE_DATE_EPOCH: every timestamp in the images
	Revision string    // the git commit, for the org.opencontainers.image.revision label
	Version  string    // the org.opencontainers.image.version label, and the tag a push uses
	CABundle string    // the CA bundle to copy to /etc/ssl/certs/ca-certificates.crt
	WorkDir  string    // where binaries are compiled; they must stay until the images are written
	Log      func(format string, args ...any)
}

// DefaultOptions fills what the caller left empty: Epoch from $SOURCE_DATE_EPOCH or else the
// HEAD commit's time, Revision from HEAD, Version from the Version constant, the Debian CA
// bundle. Root and WorkDir have no default.
func DefaultOptions(ctx context.Context, o Options) (Options, error) {
	if o.Root == "" || o.WorkDir == "" {
		return o, fmt.Errorf("images: Options.Root and Options.WorkDir are required")
	}
	if o.Epoch.IsZero() {
		epoch, err := sourceDateEpoch(ctx, o.Root)
		if err != nil {
			return o, err
		}
		o.Epoch = epoch
	}
	o.Epoch = o.Epoch.UTC()
	if o.Revision == "" {
		rev, err := git(ctx, o.Root, "rev-parse", "HEAD")
		if err != nil {
			return o, err
		}
		o.Revision = rev
	}
	if o.Version == "" {
		o.Version = Version
	}
	if o.CABundle == "" {
		o.CABundle = DefaultCABundle
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	return o, nil
}

// sourceDateEpoch follows reproducible-builds.org: $SOURCE_DATE_EPOCH if set, else the time of
// the commit being built, so two builds of one commit agree without anyone setting anything.
func sourceDateEpoch(ctx context.Context, root string) (time.Time, error) {
	s, fromEnv := os.LookupEnv("SOURCE_DATE_EPOCH")
	if !fromEnv {
		var err error
		if s, err = git(ctx, root, "log", "-1", "--format=%ct"); err != nil {
			return time.Time{}, fmt.Errorf("%w (or set SOURCE_DATE_EPOCH to a Unix time)", err)
		}
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil || sec < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want a non-negative Unix time in seconds", s)
	}
	return time.Unix(sec, 0).UTC(), nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return "", fmt.Errorf("git %s in %s: %s", strings.Join(args, " "), dir, msg)
	}
	return strings.TrimSpace(string(out)), nil
}
