package harborapi

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Target is what Run reads: a project, one of its repositories (without the project, may be
// nested) and a tag in it (empty: the first artifact listed).
type Target struct {
	Project, Repository, Tag string
}

// Run reads the target's project, repository, artifact, tags and scan overview, then sends the
// must-not probes, writing one line per operation to w:
//
//	OK <operation> <subject> key=value ...
//	FAIL <operation> <subject>: <error>
//	REFUSED <method> <path> status=403 code=... connector=... message="..."
//	ALLOWED <method> <path> status=... code=... message="..."
//
// It reports whether every read succeeded and every probe was refused.
func Run(ctx context.Context, c *Client, t Target, w io.Writer) bool {
	ok := true
	fail := func(op, subject string, err error) {
		ok = false
		fmt.Fprintf(w, "FAIL %s %s: %v\n", op, subject, err)
	}

	if answer, err := c.Ping(ctx); err != nil {
		fail("ping", c.base.Host, err)
	} else {
		fmt.Fprintf(w, "OK ping %s answer=%s\n", c.base.Host, strings.TrimSpace(answer))
	}

	if projects, p, err := c.Projects(ctx); err != nil {
		fail("projects", c.base.Host, err)
	} else {
		fmt.Fprintf(w, "OK projects %s %s names=%s\n", c.base.Host, paging(p), names(projects, func(p Project) string { return p.Name }))
	}

	if repos, p, err := c.Repositories(ctx, t.Project); err != nil {
		fail("repositories", t.Project, err)
	} else {
		fmt.Fprintf(w, "OK repositories %s %s names=%s\n", t.Project, paging(p), names(repos, func(r Repository) string { return r.Name }))
	}

	runArtifact(ctx, c, t, w, fail)

	for _, probe := range MustNotProbes(t.Project, t.Repository) {
		r := c.Send(ctx, probe)
		path, _, _ := strings.Cut(probe.Path, "?")
		switch {
		case r.Err != nil:
			fail("probe", probe.Method+" "+path, r.Err)
		case r.Refused:
			fmt.Fprintf(w, "REFUSED %s %s status=%d code=%s connector=%s message=%q\n", probe.Method, path, r.Status, r.Code, r.Connector, r.Message)
		default:
			ok = false
			fmt.Fprintf(w, "ALLOWED %s %s status=%d code=%s message=%q\n", probe.Method, path, r.Status, r.Code, r.Message)
		}
	}
	return ok
}

// runArtifact lists the repository's artifacts, picks the one tagged t.Tag, lists its tags and
// reads it by tag to show its scan overview; fail records each failure.
func runArtifact(ctx context.Context, c *Client, t Target, w io.Writer, fail func(op, subject string, err error)) {
	repo := t.Project + "/" + t.Repository
	artifacts, p, err := c.Artifacts(ctx, t.Project, t.Repository)
	if err != nil {
		fail("artifacts", repo, err)
		return
	}
	i := slices.IndexFunc(artifacts, func(a Artifact) bool { return t.Tag == "" || slices.Contains(a.TagNames(), t.Tag) })
	if i < 0 {
		fail("artifacts", repo, fmt.Errorf("no artifact tagged %q among %d", t.Tag, len(artifacts)))
		return
	}
	a := artifacts[i]
	fmt.Fprintf(w, "OK artifacts %s %s digest=%s tags=%s scan=%s\n", repo, paging(p), a.Digest, strings.Join(a.TagNames(), ","), scanStatus(a))

	if tags, p, err := c.Tags(ctx, t.Project, t.Repository, a.Digest); err != nil {
		fail("tags", repo+"@"+a.Digest, err)
	} else {
		fmt.Fprintf(w, "OK tags %s@%s %s names=%s\n", repo, a.Digest, paging(p), names(tags, func(t Tag) string { return t.Name }))
	}

	ref, subject := a.Digest, repo+"@"+a.Digest
	if t.Tag != "" {
		ref, subject = t.Tag, repo+":"+t.Tag
	}
	one, err := c.Artifact(ctx, t.Project, t.Repository, ref)
	if err == nil && one.Digest != a.Digest {
		err = fmt.Errorf("digest %s, but the listing had %s", one.Digest, a.Digest)
	}
	mimeType, s, found := one.Scan()
	if err == nil && !found {
		err = fmt.Errorf("no scan_overview in the artifact (report types %v)", reportTypes)
	}
	if err != nil {
		fail("scan", subject, err)
		return
	}
	fmt.Fprintf(w, "OK scan %s digest=%s status=%s severity=%s total=%d fixable=%d scanner=%s report=%q\n",
		subject, one.Digest, s.ScanStatus, s.Severity, s.Summary.Total, s.Summary.Fixable, s.Scanner.Name, mimeType)
}

func paging(p Paging) string { return fmt.Sprintf("total=%d pages=%d", p.Total, p.Pages) }

func names[T any](items []T, name func(T) string) string {
	var out []string
	for _, it := range items {
		out = append(out, name(it))
	}
	return strings.Join(out, ",")
}

// scanStatus is the scan status and severity of the artifact's overview, or "none".
func scanStatus(a Artifact) string {
	if _, s, ok := a.Scan(); ok {
		return s.ScanStatus + "/" + s.Severity
	}
	return "none"
}
