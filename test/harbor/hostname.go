package testharbor

import (
	"net"
	"os"
)

// LoopbackHostName is this machine's host name when it resolves only to loopback addresses (as
// /etc/hosts usually has it), else "". A test Harbor named by it can be reached through
// HTTPS_PROXY: clients never send loopback targets (127.0.0.1, localhost) through a proxy.
func LoopbackHostName() string {
	name, err := os.Hostname()
	if err != nil || name == "" || name == "localhost" {
		return ""
	}
	addrs, err := net.LookupIP(name)
	if err != nil || len(addrs) == 0 {
		return ""
	}
	for _, a := range addrs {
		if !a.IsLoopback() {
			return ""
		}
	}
	return name
}
