// Command harbor-api-client reads a Harbor's REST API (projects, repositories, artifacts, tags,
// scan overview) and probes what it must not be able to do, from a Kubernetes Job behind the
// connectors forward proxy: HTTPS_PROXY names the proxy, SSL_CERT_DIR (or SSL_CERT_FILE) holds
// its interception CA, and no Harbor credential is given to it. One line per operation on
// stdout (harborapi.Run); the exit status is 1 if a read failed or a probe was not refused.
//
//	harbor-api-client --harbor https://harbor.example.com --project team --repository nested/app --tag v1
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alauda/harbor-connector/test/harborapi"
)

func main() { os.Exit(run()) }

func run() int {
	harbor := flag.String("harbor", "", "the Harbor's original URL, https://host[:port]")
	var t harborapi.Target
	flag.StringVar(&t.Project, "project", "", "project to read")
	flag.StringVar(&t.Repository, "repository", "", "repository in the project, without the project (may be nested: a/b)")
	flag.StringVar(&t.Tag, "tag", "", "tag of the artifact to read (default: the first artifact listed)")
	pageSize := flag.Int("page-size", harborapi.DefaultPageSize, "page_size of every listing (small, so paging is exercised)")
	timeout := flag.Duration("timeout", 5*time.Minute, "time allowed for everything")
	flag.Parse()
	if *harbor == "" || t.Project == "" || t.Repository == "" || *pageSize < 1 {
		fmt.Fprintln(os.Stderr, "usage: harbor-api-client --harbor https://host[:port] --project P --repository R [--tag T] [--page-size N]")
		return 2
	}
	c, err := harborapi.New(*harbor, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c.PageSize = *pageSize
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if !harborapi.Run(ctx, c, t, os.Stdout) {
		return 1
	}
	return 0
}
