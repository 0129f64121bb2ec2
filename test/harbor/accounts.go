package testharbor

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"time"
)

// Actions a token can grant on a repository, as Harbor's token service names them.
const (
	ActionPull   = "pull"
	ActionPush   = "push"
	ActionDelete = "delete"
)

type account struct {
	password string
	robot    bool
	admin    bool
	grants   map[string][]string // project -> actions
}

// accounts holds projects, users and robot accounts, as Harbor's core database would.
type accounts struct {
	mu       sync.RWMutex
	projects map[string]bool // project -> public
	// projectInfo holds what the API shows of a project besides its publicity.
	projectInfo map[string]projectInfo
	users       map[string]*account
	nextRobotID int
}

type projectInfo struct {
	id      int
	created time.Time
}

func newAccounts() *accounts {
	return &accounts{projects: map[string]bool{}, projectInfo: map[string]projectInfo{}, users: map[string]*account{}}
}

// authenticate returns the account for a username and password, or nil.
func (a *accounts) authenticate(user, password string) (*account, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	acc, ok := a.users[user]
	if !ok || acc.password != password {
		return nil, false
	}
	return acc, true
}

// granted returns the subset of the requested actions that acc (nil: anonymous) holds on a
// repository. Harbor decides by the repository's project, its first path segment.
func (a *accounts) granted(acc *account, repository string, requested []string) []string {
	project, _, _ := strings.Cut(repository, "/")
	a.mu.RLock()
	public, exists := a.projects[project]
	a.mu.RUnlock()
	if !exists {
		return nil
	}
	held := map[string]bool{}
	if public {
		held[ActionPull] = true
	}
	if acc != nil {
		if acc.admin {
			held[ActionPull], held[ActionPush], held[ActionDelete], held["*"] = true, true, true, true
		}
		for _, action := range acc.grants[project] {
			held[action] = true
		}
	}
	var out []string
	for _, action := range requested {
		if held[action] {
			out = append(out, action)
		}
	}
	return out
}

func randomSecret() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
