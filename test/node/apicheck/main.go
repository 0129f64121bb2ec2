// Command apicheck runs in a pod on the test node and reaches the API server the way in-cluster
// clients do: with the pod's ServiceAccount token and the kube-root-ca.crt CA, at each address
// given as an argument (the kubernetes Service's IP, its DNS name). It prints "<address>
// <server version>" per address and exits non-zero on the first one that fails, so the test
// sees which route, name or certificate is wrong.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"
)

const sa = "/var/run/secrets/kubernetes.io/serviceaccount/"

func main() {
	token, err := os.ReadFile(sa + "token")
	check(err)
	ca, err := os.ReadFile(sa + "ca.crt")
	check(err)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		check(fmt.Errorf("no certificate in %sca.crt", sa))
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, addr := range os.Args[1:] {
		req, err := http.NewRequest(http.MethodGet, "https://"+addr+"/version", nil)
		check(err)
		req.Header.Set("Authorization", "Bearer "+string(token))
		resp, err := client.Do(req)
		check(err)
		var v struct{ GitVersion string }
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		check(err)
		if resp.StatusCode != http.StatusOK {
			check(fmt.Errorf("%s: %s", addr, resp.Status))
		}
		fmt.Println(addr, v.GitVersion)
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "apicheck:", err)
		os.Exit(1)
	}
}
