// Command credential-provider is the kubelet image credential provider
// connectors-credential-provider (README "Per-pod pulls (kubelet credential provider)"). The
// kubelet runs it for a pull from the node pull listener with the pulling pod's ServiceAccount
// token on stdin; it answers that token as the pull's password, so the central proxy can tell
// which pod pulls. Flags, stdin and stdout only; the answer is respond.go.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/alauda/harbor-connector/policies"
)

// name is how the kubelet knows the plugin: its CredentialProviderConfig's provider name, which
// must equal the executable's file name in --image-credential-provider-bin-dir.
const name = "connectors-credential-provider"

func main() {
	pullHost := flag.String("pull-host", policies.DefaultPullHost, "the node pull listener's host:port, as the webhook writes it into images; only images on it get the pod's token")
	flag.Parse()
	if err := run(*pullHost, flag.Args()); err != nil {
		// stderr is what the kubelet logs with the failed pull; the token is never in it.
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

func run(pullHost string, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q: the only input is the request on stdin; remove them from the provider's args in the kubelet's CredentialProviderConfig", args)
	}
	if pullHost == "" {
		return fmt.Errorf("--pull-host is empty: set it to the webhook's pull host (default %s)", policies.DefaultPullHost)
	}
	resp, err := respond(os.Stdin, pullHost, time.Now())
	if err != nil {
		return err
	}
	return writeResponse(os.Stdout, resp)
}
