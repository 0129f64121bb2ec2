// Command coredns is CoreDNS with only the plugins the test node's cluster DNS uses
// (test/node/coredns.go writes its Corefile). It is its own module, so it builds with the
// dependency versions CoreDNS's go.mod selects rather than the product's, and the root module's
// go build/vet/test ./... skip it. test/tools/node-deps.sh builds it into the node's runtime
// directory at COREDNS_VERSION (test/tools/versions.env), which this go.mod must require.
package main

import (
	"fmt"
	"os"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// The plugins in directives, and nothing else: the full set would pull in the cloud SDKs.
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// directives are the plugins a Corefile may use, in CoreDNS's execution order (its plugin.cfg):
// the order a request passes through them, whatever the order in the Corefile.
var directives = []string{
	"bind",
	"ready",
	"health",
	"errors",
	"log",
	"cache",
	"hosts",
	"kubernetes",
	"forward",
}

func main() {
	if err := dnsserver.SetDirectives(directives); err != nil {
		fmt.Fprintln(os.Stderr, "coredns:", err)
		os.Exit(1)
	}
	coremain.Run()
}
