package images

import (
	"archive/tar"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The accounts of every image. nonroot (65532) is the user the unprivileged images run as;
// root is there for the CSI driver, and nobody by convention. No account has a home in the
// image (every manifest makes the root filesystem read-only): /nonexistent is Debian's name for
// that.
const (
	passwd = "root:x:0:0:root:/nonexistent:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n"
	group = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"
)

// file is one regular file of a layer: its bytes, or a host file read when the layer is read
// (a binary is tens of megabytes; six of them need not sit in memory).
type file struct {
	name string // absolute path in the image
	mode int64
	data []byte
	host string
}

// baseLayer holds what every image shares: the CA bundle, /etc/passwd and /etc/group. It is the
// same blob in all six platform images, so a registry stores it once.
func baseLayer(caBundle string, epoch time.Time) (mutate.Addendum, error) {
	ca, err := os.ReadFile(caBundle)
	if err != nil {
		return mutate.Addendum{}, fmt.Errorf("the images need a CA bundle at %s: %w; on Debian or Ubuntu run `apt-get install ca-certificates`, or pass another PEM bundle (make images CA_BUNDLE=...)", caBundle, err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(ca) {
		return mutate.Addendum{}, fmt.Errorf("CA bundle %s holds no PEM certificate; reinstall it with `apt-get install --reinstall ca-certificates`", caBundle)
	}
	return layer([]file{
		{name: "/etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: ca},
		{name: "/etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "/etc/group", mode: 0o644, data: []byte(group)},
	}, epoch, "CA bundle, /etc/passwd, /etc/group")
}

// binaryLayer holds an image's binaries (binaryFiles): one layer, so an image with tools has
// the same two layers as one without.
func binaryLayer(files []file, epoch time.Time) (mutate.Addendum, error) {
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = path.Base(f.name)
	}
	return layer(files, epoch, "go build "+strings.Join(names, " "))
}

// layer makes an OCI layer whose bytes depend on nothing but the files and epoch: entries are
// sorted, parent directories are added (0755), every timestamp is epoch, owners are 0:0 with
// no names, and the format is plain ustar (no PAX records with access or change times). The
// gzip go-containerregistry writes has no name or time in its header, so equal tars give equal
// blobs with the same Go release (compress/flate's output is fixed within one).
func layer(files []file, epoch time.Time, createdBy string) (mutate.Addendum, error) {
	for _, f := range files {
		if !path.IsAbs(f.name) || path.Clean(f.name) != f.name {
			return mutate.Addendum{}, fmt.Errorf("image path %q is not a clean absolute path", f.name)
		}
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		r, w := io.Pipe()
		go func() { w.CloseWithError(writeTar(w, files, epoch)) }()
		return r, nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return mutate.Addendum{}, err
	}
	return mutate.Addendum{
		Layer:     l,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "make images: " + createdBy, Comment: "harbor-connector test/images"},
	}, nil
}

func writeTar(w io.Writer, files []file, epoch time.Time) error {
	type entry struct {
		name string // without the leading slash, as tar entries are named
		f    *file  // nil for a directory
	}
	seen := map[string]bool{}
	var entries []entry
	for i := range files {
		name := strings.TrimPrefix(files[i].name, "/")
		entries = append(entries, entry{name: name, f: &files[i]})
		for dir := path.Dir(name); dir != "." && !seen[dir]; dir = path.Dir(dir) {
			seen[dir] = true
			entries = append(entries, entry{name: dir})
		}
	}
	// A parent's name is a prefix of its children's, so it sorts first.
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })

	tw := tar.NewWriter(w)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, ModTime: epoch, Format: tar.FormatUSTAR}
		if e.f == nil {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, e.name+"/", 0o755
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			continue
		}
		hdr.Typeflag, hdr.Mode = tar.TypeReg, e.f.mode
		if err := writeFile(tw, hdr, e.f); err != nil {
			return err
		}
	}
	return tw.Close()
}

func writeFile(tw *tar.Writer, hdr *tar.Header, f *file) error {
	if f.host == "" {
		hdr.Size = int64(len(f.data))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(f.data)
		return err
	}
	in, err := os.Open(f.host)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	hdr.Size = st.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := io.Copy(tw, in); err != nil {
		return fmt.Errorf("copying %s into the layer: %w", f.host, err)
	}
	return nil
}
