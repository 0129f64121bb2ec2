package testharbor

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The API's view of repositories, artifacts and tags is read from the registry's filesystem
// storage (distribution's layout under docker/registry/v2), which holds what Harbor's core
// records in its database when the registry tells it of a push: a repository per directory with
// _manifests, an artifact per manifest revision link (its mtime is the push time), a tag per
// tags/<name>/current/link.

type catalogTag struct {
	name     string
	pushTime time.Time
}

type catalogReference struct {
	digest   string
	platform map[string]any
}

type catalogArtifact struct {
	digest            string
	kind              string // Harbor's artifact type: IMAGE, CHART or UNKNOWN
	mediaType         string // the config's media type for an image manifest, the manifest's for an index
	manifestMediaType string
	size              int64
	pushTime          time.Time
	tags              []catalogTag
	annotations       map[string]string
	extraAttrs        map[string]any
	references        []catalogReference
}

type catalogRepository struct {
	name              string
	created, updated  time.Time
	artifacts         []*catalogArtifact // listed ones, newest first
	artifactsByDigest map[string]*catalogArtifact
}

func (s *Server) storageRoot() string {
	return filepath.Join(s.opts.Dir, "storage", "docker", "registry", "v2")
}

// repositories lists a project's repositories, newest first, as Harbor does by default.
func (s *Server) repositories(project string) ([]*catalogRepository, error) {
	base := filepath.Join(s.storageRoot(), "repositories")
	var names []string
	err := filepath.WalkDir(filepath.Join(base, project), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() || !strings.HasPrefix(d.Name(), "_") {
			return nil
		}
		if d.Name() == "_manifests" {
			rel, err := filepath.Rel(base, filepath.Dir(p))
			if err == nil && rel != project {
				names = append(names, filepath.ToSlash(rel))
			}
		}
		return fs.SkipDir // _manifests, _layers, _uploads hold no repositories
	})
	if err != nil {
		return nil, err
	}
	var out []*catalogRepository
	for _, name := range names {
		r, err := s.repository(name)
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].created.Equal(out[j].created) {
			return out[i].created.After(out[j].created)
		}
		return out[i].name < out[j].name
	})
	return out, nil
}

// repository reads one repository ("project/name"), or nil when no manifest was ever pushed to
// it (Harbor records a repository with its first artifact).
func (s *Server) repository(name string) (*catalogRepository, error) {
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.HasPrefix(seg, "_") {
			return nil, nil
		}
	}
	dir := filepath.Join(s.storageRoot(), "repositories", filepath.FromSlash(name), "_manifests")
	revisions, err := os.ReadDir(filepath.Join(dir, "revisions", "sha256"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	repo := &catalogRepository{name: name, artifactsByDigest: map[string]*catalogArtifact{}}
	for _, e := range revisions {
		st, err := os.Stat(filepath.Join(dir, "revisions", "sha256", e.Name(), "link"))
		if err != nil {
			continue // deleted
		}
		a, err := s.readArtifact("sha256:" + e.Name())
		if err != nil {
			return nil, err
		}
		a.pushTime = st.ModTime()
		repo.artifactsByDigest[a.digest] = a
	}
	tags, _ := os.ReadDir(filepath.Join(dir, "tags"))
	for _, t := range tags {
		link := filepath.Join(dir, "tags", t.Name(), "current", "link")
		b, err := os.ReadFile(link)
		if err != nil {
			continue
		}
		st, err := os.Stat(link)
		if err != nil {
			continue
		}
		if a := repo.artifactsByDigest[strings.TrimSpace(string(b))]; a != nil {
			a.tags = append(a.tags, catalogTag{name: t.Name(), pushTime: st.ModTime()})
		}
	}
	// An index's untagged children are artifacts Harbor lists only through the index.
	child := map[string]bool{}
	for _, a := range repo.artifactsByDigest {
		for _, ref := range a.references {
			child[ref.digest] = true
		}
	}
	for _, a := range repo.artifactsByDigest {
		sort.Slice(a.tags, func(i, j int) bool {
			if !a.tags[i].pushTime.Equal(a.tags[j].pushTime) {
				return a.tags[i].pushTime.After(a.tags[j].pushTime)
			}
			return a.tags[i].name < a.tags[j].name
		})
		for _, t := range a.tags {
			if t.pushTime.After(repo.updated) {
				repo.updated = t.pushTime
			}
		}
		if a.pushTime.After(repo.updated) {
			repo.updated = a.pushTime
		}
		if repo.created.IsZero() || a.pushTime.Before(repo.created) {
			repo.created = a.pushTime
		}
		if child[a.digest] && len(a.tags) == 0 {
			continue
		}
		repo.artifacts = append(repo.artifacts, a)
	}
	sort.Slice(repo.artifacts, func(i, j int) bool {
		ai, aj := repo.artifacts[i], repo.artifacts[j]
		if !ai.pushTime.Equal(aj.pushTime) {
			return ai.pushTime.After(aj.pushTime)
		}
		return ai.digest < aj.digest
	})
	return repo, nil
}

func (s *Server) blobPath(digest string) (string, bool) {
	hexDigest, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hexDigest) != 64 || strings.Trim(hexDigest, "0123456789abcdef") != "" {
		return "", false
	}
	return filepath.Join(s.storageRoot(), "blobs", "sha256", hexDigest[:2], hexDigest, "data"), true
}

type descriptor struct {
	MediaType string         `json:"mediaType"`
	Digest    string         `json:"digest"`
	Size      int64          `json:"size"`
	Platform  map[string]any `json:"platform"`
}

// readArtifact reads a manifest as Harbor's artifact processors do: an image's size is its
// manifest's, config's and layers' together, an index's its own and its children's.
func (s *Server) readArtifact(digest string) (*catalogArtifact, error) {
	p, ok := s.blobPath(digest)
	if !ok {
		return nil, errors.New("bad digest " + digest)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var m struct {
		MediaType   string            `json:"mediaType"`
		Config      *descriptor       `json:"config"`
		Layers      []descriptor      `json:"layers"`
		Manifests   []descriptor      `json:"manifests"`
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	a := &catalogArtifact{digest: digest, manifestMediaType: m.MediaType, size: int64(len(data)), annotations: m.Annotations, kind: "IMAGE"}
	if m.Config == nil {
		if a.manifestMediaType == "" {
			a.manifestMediaType = "application/vnd.oci.image.index.v1+json"
		}
		a.mediaType = a.manifestMediaType
		for _, d := range m.Manifests {
			size := d.Size
			if c, err := s.readArtifact(d.Digest); err == nil {
				size = c.size
			}
			a.size += size
			a.references = append(a.references, catalogReference{digest: d.Digest, platform: d.Platform})
		}
		return a, nil
	}
	if a.manifestMediaType == "" {
		a.manifestMediaType = "application/vnd.oci.image.manifest.v1+json"
	}
	a.mediaType = m.Config.MediaType
	a.size += m.Config.Size
	for _, l := range m.Layers {
		a.size += l.Size
	}
	switch m.Config.MediaType {
	case "application/vnd.docker.container.image.v1+json", "application/vnd.oci.image.config.v1+json":
		if cp, ok := s.blobPath(m.Config.Digest); ok {
			var cfg map[string]any
			if b, err := os.ReadFile(cp); err == nil && json.Unmarshal(b, &cfg) == nil {
				a.extraAttrs = map[string]any{}
				for _, k := range []string{"architecture", "author", "config", "created", "os"} {
					if v, ok := cfg[k]; ok {
						a.extraAttrs[k] = v
					}
				}
			}
		}
	case "application/vnd.cncf.helm.config.v1+json":
		a.kind = "CHART"
	default:
		a.kind = "UNKNOWN"
	}
	return a, nil
}
