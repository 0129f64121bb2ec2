// Command test-harbor runs the test Harbor (the real distribution registry behind a small Harbor
// 2.x front) for demos and manual experiments. It prints one JSON object describing what it
// serves, including the robot accounts it created, then serves until interrupted.
//
//	test-harbor --addr 127.0.0.1:5000 --tls --ca-out /tmp/harbor-ca.crt \
//	    --project library:public --project team --robot team/ci --user admin:Harbor12345:admin
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	testharbor "github.com/alauda/harbor-connector/test/harbor"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

type robot struct {
	Username string `json:"username"`
	Secret   string `json:"secret"`
}

func main() {
	var projects, users, robots, hosts list
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	useTLS := flag.Bool("tls", false, "serve HTTPS with a certificate from a new test CA")
	caOut := flag.String("ca-out", "", "write the test CA (PEM) to this file (with --tls)")
	flag.Var(&hosts, "host", "host name or IP the TLS certificate is valid for (repeatable; default 127.0.0.1, localhost)")
	flag.Var(&projects, "project", "project to create, name[:public] (repeatable)")
	flag.Var(&users, "user", "user to create, name:password[:admin] (repeatable)")
	flag.Var(&robots, "robot", "robot account to create with pull and push, project/name (repeatable)")
	flag.Parse()

	h, err := testharbor.Start(testharbor.Options{Addr: *addr, TLS: *useTLS, Hosts: hosts})
	if err != nil {
		fatal(err)
	}
	defer h.Close()
	for _, p := range projects {
		name, vis, _ := strings.Cut(p, ":")
		h.AddProject(name, vis == "public")
	}
	for _, u := range users {
		parts := strings.SplitN(u, ":", 3)
		if len(parts) < 2 {
			fatal(fmt.Errorf("--user %q: want name:password[:admin]", u))
		}
		h.AddUser(parts[0], parts[1], len(parts) == 3 && parts[2] == "admin")
	}
	out := struct {
		URL    string  `json:"url"`
		Host   string  `json:"host"`
		CA     string  `json:"ca,omitempty"`
		Robots []robot `json:"robots"`
	}{URL: h.URL(), Host: h.Host(), Robots: []robot{}}
	for _, r := range robots {
		project, name, ok := strings.Cut(r, "/")
		if !ok {
			fatal(fmt.Errorf("--robot %q: want project/name", r))
		}
		user, secret := h.AddRobot(project, name)
		out.Robots = append(out.Robots, robot{user, secret})
	}
	if *caOut != "" && h.CACertPEM() != nil {
		if err := os.WriteFile(*caOut, h.CACertPEM(), 0o644); err != nil {
			fatal(err)
		}
		out.CA = *caOut
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fatal(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "test-harbor:", err)
	os.Exit(1)
}
