// Command pause is the pod sandbox ("infra") container of the end-to-end node: it holds the pod's
// namespaces open and does nothing else. The stock registry.k8s.io/pause image cannot be
// downloaded here (TESTING.md "A real node"), so test/node builds this static binary into an
// image and sets it as containerd's sandbox_image.
//
// It exits on SIGTERM or SIGINT. It does not reap children: no pod on the test node shares its
// process namespace.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
