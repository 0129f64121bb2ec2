//go:build e2e

package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/alauda/harbor-connector/policies"
)

// nsBuilds runs the build tools. buildkitd and buildah need a privileged container (rootful,
// the OCI worker), so the namespace enforces the privileged Pod Security level; it has its own
// Connector, like any team.
const nsBuilds = "builds"

// 6. The build tools the seed product's users run, each in a Job (or a Pod) that carries
// nothing but the connector annotation (README "Build tools: recipes"; make e2e-tools runs only
// these). Each pushes an image
// built from a context holding a file unique to the run; the test then pulls that image from
// Harbor itself and finds the file. No credential and no insecure flag anywhere.
func buildTools(t *testing.T) {
	ctx := context.Background()
	c := w.node.Client
	require.NoError(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsBuilds, Labels: map[string]string{
		policies.LabelProxyInject: "true", "pod-security.kubernetes.io/enforce": "privileged"}}}))
	require.NoError(t, w.node.WaitForServiceAccount(ctx, nsBuilds))
	require.NoError(t, w.addConnector(ctx, nsBuilds))
	images := w.pushToolImages(ctx, t)
	run := fmt.Sprintf("run-%d", time.Now().UnixNano())

	t.Run("buildkit through the forward proxy", func(t *testing.T) { buildkitForward(t, images, run) })
	t.Run("buildkit with buildkitd.toml and config.json (reverse)", func(t *testing.T) { buildkitReverse(t, images, run) })
	t.Run("ko through the forward proxy", func(t *testing.T) { koBuild(t, images, run) })
	t.Run("buildah bud with REGISTRY_AUTH_FILE and the mounted CA", func(t *testing.T) { buildahBud(t, images, run) })
	t.Run("Harbor API clients: curl and a Go client of Harbor's REST API", func(t *testing.T) { harborAPIClients(t, images, run) })
	t.Run("a pipeline: init-container steps sharing a workspace", func(t *testing.T) { pipeline(t, images, run) })
	t.Run("seed recipe: hand-written CSI volume and http.proxy exports", func(t *testing.T) { seedForwardRecipe(t, run) })
	t.Run("seed recipe: reverse image names with config.json and buildkitd.toml", func(t *testing.T) { seedReverseRecipe(t, run) })
}

// buildsReverseRef is an image name on the reverse proxy for the builds namespace's connector.
func buildsReverseRef(repo string) string {
	return proxyService + "/" + policies.ProxyPath(policies.ConnectorRef{Namespace: nsBuilds, Name: connectorName}) + "/" + project + "/" + repo
}

// harborRef is repo in the private project under Harbor's own name.
func harborRef(repo string) string { return w.harborHost + "/" + project + "/" + repo }

// buildContext writes a Dockerfile FROM base (pulled through the connector too) that copies a
// file with content unique to the run: the proof that the pushed image is this build's.
func buildContext(dir, base, unique string) string {
	return fmt.Sprintf(`mkdir -p %[1]s
echo %[3]s > %[1]s/unique.txt
printf 'FROM %[2]s\nCOPY unique.txt /unique.txt\n' > %[1]s/Dockerfile
`, dir, base, unique)
}

// buildkitScript starts buildkitd (rootful, OCI worker, state on an emptyDir) with flags, waits
// for its socket, and builds dir into ref, pushing it; the digest lands in dir/metadata.json.
func buildkitScript(flags, dir, ref string) string {
	// The test images have no /tmp (and the seed recipe mounts its read-only volume there).
	return fmt.Sprintf(`mkdir -p /work/tmp; export TMPDIR=/work/tmp
buildkitd --root /var/lib/buildkit --oci-worker-net=host %[1]s >/work/buildkitd.log 2>&1 &
for i in $(seq 60); do buildctl debug workers >/dev/null 2>&1 && break; sleep 1; done
buildctl build --progress=plain --frontend dockerfile.v0 --local context=%[2]s --local dockerfile=%[2]s \
  --output type=image,name=%[3]s,push=true --metadata-file %[2]s/metadata.json || { echo "buildkitd log:"; tail -50 /work/buildkitd.log; exit 1; }
`, flags, dir, ref)
}

// privileged gives the Job's containers what rootful buildkitd and buildah need: privilege and
// an emptyDir for their state (overlayfs cannot sit on the container's own overlay).
func privileged(stateDir string) func(*batchv1.Job) {
	return func(j *batchv1.Job) {
		spec := &j.Spec.Template.Spec
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "state", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		for i := range spec.Containers {
			spec.Containers[i].SecurityContext = &corev1.SecurityContext{Privileged: ptr(true)}
			spec.Containers[i].VolumeMounts = append(spec.Containers[i].VolumeMounts, corev1.VolumeMount{Name: "state", MountPath: stateDir})
		}
	}
}

func buildkitForward(t *testing.T, images toolImages, run string) {
	ref, unique := harborRef("bk-forward:"+run), "buildkit-forward-"+run
	res := runJob(t, jobSpec{namespace: nsBuilds, name: "buildkit-forward", image: images.buildkit, connector: connectorName, deadline: 6 * time.Minute,
		script: buildContext("ctx", w.appImage(), unique) + buildkitScript("", "ctx", ref), mutate: privileged("/var/lib/buildkit")})
	requireBuilt(t, res, ref, "/unique.txt", unique)
	assert.Equal(t, forwardURL, envOf(res.pod.Spec.Containers[0])["HTTPS_PROXY"])
}

func buildkitReverse(t *testing.T, images toolImages, run string) {
	ref, unique := buildsReverseRef("bk-reverse:"+run), "buildkit-reverse-"+run
	res := runJob(t, jobSpec{namespace: nsBuilds, name: "buildkit-reverse", image: images.buildkit, connector: connectorName, deadline: 6 * time.Minute,
		script: "test -s $DOCKER_CONFIG/config.json\n" + buildContext("ctx", buildsReverseRef("app:v1"), unique) +
			buildkitScript("--config "+policies.MountPath+"/buildkitd.toml", "ctx", ref),
		mutate: privileged("/var/lib/buildkit")})
	requireBuilt(t, res, harborRef("bk-reverse:"+run), "/unique.txt", unique)
}

func koBuild(t *testing.T, images toolImages, run string) {
	repo, unique := harborRef("ko-hello"), "ko-"+run
	// ko runs the Go toolchain; the test bed lends it the host's, read-only (an image of ko
	// with Go in it would do the same). The program has no dependencies, so no module proxy.
	script := fmt.Sprintf(`mkdir -p hello/kodata; cd hello
echo %[1]s > kodata/unique.txt
printf 'module example.com/hello\ngo 1.26\n' > go.mod
printf 'package main\n\nfunc main() { println("hello from ko") }\n' > main.go
mkdir -p /work/tmp # the image has no /tmp, where go keeps its work directory
export PATH=$PATH:/usr/local/go/bin TMPDIR=/work/tmp HOME=/work GOCACHE=/work/gocache GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod
export KO_DOCKER_REPO=%[2]s KO_DEFAULTBASEIMAGE=%[3]s
ko build --bare --sbom=none --platform=linux/amd64 --tags=%[4]s .
`, unique, repo, w.appImage(), run)
	res := runJob(t, jobSpec{namespace: nsBuilds, name: "ko", image: images.ko, connector: connectorName, deadline: 8 * time.Minute, script: script,
		mutate: func(j *batchv1.Job) { hostGo(j) }})
	requireBuilt(t, res, repo+":"+run, "/var/run/ko/unique.txt", unique)
}

// hostGo mounts the host's Go toolchain read-only at /usr/local/go.
func hostGo(j *batchv1.Job) {
	spec := &j.Spec.Template.Spec
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "go", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: goRoot()}}})
	spec.Containers[0].VolumeMounts = append(spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "go", MountPath: "/usr/local/go", ReadOnly: true})
}

func buildahBud(t *testing.T, images toolImages, run string) {
	ref, unique := buildsReverseRef("buildah:"+run), "buildah-"+run
	// The base image by its Harbor name goes through HTTPS_PROXY, trusting the interception CA
	// that the webhook mounts at /etc/containers/certs.d/<harbor host>; the push goes to the
	// reverse address with REGISTRY_AUTH_FILE. vfs: no overlay on the container's overlay.
	script := buildContext("ctx", w.appImage(), unique) + fmt.Sprintf(`mkdir -p /var/tmp
test -s "$REGISTRY_AUTH_FILE"
ls /etc/containers/certs.d/%[2]s/ca.crt
buildah --storage-driver vfs bud --isolation chroot -t %[1]s ctx
buildah --storage-driver vfs push --digestfile ctx/digest %[1]s
cat ctx/digest
`, ref, w.harborHost)
	res := runJob(t, jobSpec{namespace: nsBuilds, name: "buildah", image: images.buildah, connector: connectorName, deadline: 6 * time.Minute, script: script,
		mutate: privileged("/var/lib/containers")})
	requireBuilt(t, res, harborRef("buildah:"+run), "/unique.txt", unique)
}

func harborAPIClients(t *testing.T, images toolImages, run string) {
	api := w.harbor.URL() + "/api/v2.0"
	script := fmt.Sprintf(`curl -sS --fail-with-body -D headers "%[1]s/projects/%[2]s/repositories?page_size=2" -o repos.json
grep -i '^x-total-count:' headers; grep -i '^link:' headers
curl -sS --fail-with-body "%[1]s/projects/%[2]s/repositories/tools%%252Fbuildkit/artifacts?with_tag=true" -o artifacts.json
echo "CURL-ARTIFACTS $(cat artifacts.json)"
code=$(curl -sS -o robot.json -w '%%{http_code}' -X POST -H 'Content-Type: application/json' -d '{"name":"sneaky","level":"system","duration":-1,"permissions":[]}' "%[1]s/robots")
echo "CURL-ROBOT $code $(cat robot.json)"
harbor-api-client --harbor %[3]s --project %[2]s --repository tools/buildkit --tag v1
`, api, project, w.harbor.URL())
	res := runJob(t, jobSpec{namespace: nsBuilds, name: "harbor-api", image: images.harborAPI, connector: connectorName, script: script})
	require.True(t, res.succeeded, "events:\n%s\nlogs:\n%s", res.events, res.logs)
	assert.Regexp(t, `(?i)x-total-count: *\d+`, res.logs, "Harbor's paging header reached curl")
	assert.Regexp(t, `(?i)link: <[^>]*page=2`, res.logs, "and its Link to the next page")
	assert.Regexp(t, `CURL-ARTIFACTS .*"name":"v1"`, res.logs, "a nested repository's artifacts, its name encoded twice")
	assert.Regexp(t, `CURL-ROBOT 403 .*DENIED`, res.logs, "creating a robot through the proxy is refused")
	assert.Contains(t, res.logs, "OK projects")
	assert.Contains(t, res.logs, "OK artifacts")
	assert.NotContains(t, res.logs, "ALLOWED")
	assert.Regexp(t, `REFUSED POST /api/v2.0/robots status=403`, res.logs)
	assert.Regexp(t, `REFUSED GET /api/v2.0/users/current status=403`, res.logs)
	assert.Regexp(t, `REFUSED GET /service/token status=403`, res.logs)
	assertClean(t, res)
}

// pipeline is one Pod whose init containers are a Task's steps, as Tekton runs them: a
// clone-like step writes the context to the shared workspace, buildkit builds and pushes it,
// and crane checks that the registry serves the digest buildkit reported.
func pipeline(t *testing.T, images toolImages, run string) {
	ref, unique := harborRef("pipeline:"+run), "pipeline-"+run
	ctx := context.Background()
	ws := corev1.VolumeMount{Name: "workspace", MountPath: "/workspace"}
	state := corev1.VolumeMount{Name: "state", MountPath: "/var/lib/buildkit"}
	step := func(name, image, script string, mounts ...corev1.VolumeMount) corev1.Container {
		return corev1.Container{Name: name, Image: image, Command: []string{"/bin/sh", "-c", "set -e; mkdir -p /work; cd /work; " + script},
			VolumeMounts: append([]corev1.VolumeMount{ws}, mounts...)}
	}
	build := step("build", images.buildkit, buildkitScript("", "/workspace/src", ref)+
		`sed -n 's/.*"containerimage.digest": *"\(sha256:[0-9a-f]*\)".*/\1/p' /workspace/src/metadata.json > /workspace/digest
test -s /workspace/digest`, state)
	build.SecurityContext = &corev1.SecurityContext{Privileged: ptr(true)}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: nsBuilds, Name: "pipeline", Annotations: map[string]string{policies.AnnotationConnector: connectorName}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Volumes: []corev1.Volume{
				{Name: "workspace", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "state", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
			InitContainers: []corev1.Container{
				step("clone", w.appImage(), buildContext("/workspace/src", w.appImage(), unique)),
				build,
			},
			Containers: []corev1.Container{step("verify", w.craneImage(), fmt.Sprintf(`want=$(cat /workspace/digest); got=$(crane digest %[1]s)
echo "built $want, registry serves $got"; test "$want" = "$got"
crane export %[1]s - | tar -xO unique.txt`, ref))},
		},
	}
	require.NoError(t, w.node.Client.Create(ctx, pod))
	t.Cleanup(func() { _ = w.node.Client.Delete(context.Background(), pod) })
	res := awaitPod(t, pod, 8*time.Minute)
	require.Equal(t, corev1.PodSucceeded, res.pod.Status.Phase, "events:\n%s\nlogs:\n%s", res.events, res.logs)
	assert.Contains(t, res.logs, unique, "crane found the file in the pushed image")
	m := regexp.MustCompile(`built (sha256:[0-9a-f]{64}), registry serves (sha256:[0-9a-f]{64})`).FindStringSubmatch(res.logs)
	require.NotNil(t, m, "crane printed both digests:\n%s", res.logs)
	assert.Equal(t, m[1], m[2], "the registry serves the digest buildkit pushed")
	// Every step was mutated: env, the volume, and its images rewritten to the node listener.
	for _, c := range append(res.pod.Spec.InitContainers, res.pod.Spec.Containers...) {
		assert.Equal(t, forwardURL, envOf(c)["HTTPS_PROXY"], "step %s has the proxy env", c.Name)
		assert.True(t, strings.HasPrefix(c.Image, pullHost+"/"), "step %s's image is rewritten: %s", c.Name, c.Image)
		assert.True(t, hasMount(c, policies.MountPath), "step %s mounts the connector volume", c.Name)
	}
	requireImageFile(t, ref, "/unique.txt", unique)
	assertClean(t, res)
}

// seedForwardRecipe is the seed product's forward-proxy buildkit recipe as its docs write it:
// no annotation, the CSI volume written by hand (connector.name, mounted at /tmp/), and the
// proxy exported from http.proxy and https.proxy. The one line the seed's example lacks is how
// buildkitd trusts the interception CA: SSL_CERT_FILE names the volume's ca.crt, so TLS stays
// verified. (The seed's example also echoes the proxy URL, token included, to the log: left out.)
func seedForwardRecipe(t *testing.T, run string) {
	ref, unique := harborRef("seed-forward:"+run), "seed-forward-"+run
	script := `export http_proxy=$(cat /tmp/http.proxy)
export https_proxy=$(cat /tmp/https.proxy)
export HTTP_PROXY=$http_proxy HTTPS_PROXY=$https_proxy no_proxy=localhost,127.0.0.1 NO_PROXY=localhost,127.0.0.1
export SSL_CERT_FILE=/tmp/ca.crt
` + buildContext("ctx", w.appImage(), unique) + buildkitScript("", "ctx", ref)
	res := runJob(t, jobSpec{namespace: nsBuilds, name: "seed-forward", image: localBuildkitImage, pullPolicy: corev1.PullNever, deadline: 6 * time.Minute, script: script,
		mutate: func(j *batchv1.Job) {
			privileged("/var/lib/buildkit")(j)
			seedVolume(j, "connectors", "/tmp", nil)
		}})
	requireBuilt(t, res, ref, "/unique.txt", unique)
	_, mutated := res.pod.Annotations[policies.AnnotationStatus]
	assert.False(t, mutated, "the seed recipe's pod is not mutated: the hand-written volume is all it has")
}

// seedReverseRecipe is the seed product's reverse-proxy recipe: the image renamed to the proxy's
// path, the registry-config configuration mounted at /root/.docker and the buildkitd one at
// /etc/buildkit, BUILDKITD_FLAGS pointing at that file.
func seedReverseRecipe(t *testing.T, run string) {
	ref, unique := buildsReverseRef("seed-reverse:"+run), "seed-reverse-"+run
	script := buildContext("ctx", buildsReverseRef("app:v1"), unique) + buildkitScript("$BUILDKITD_FLAGS", "ctx", ref)
	res := runJob(t, jobSpec{namespace: nsBuilds, name: "seed-reverse", image: localBuildkitImage, pullPolicy: corev1.PullNever, deadline: 6 * time.Minute, script: script,
		mutate: func(j *batchv1.Job) {
			privileged("/var/lib/buildkit")(j)
			seedVolume(j, "registry-config", "/root/.docker", map[string]string{policies.CSIAttrConfigurationNames: "registry-config"})
			seedVolume(j, "buildkitd-config", "/etc/buildkit", map[string]string{policies.CSIAttrConfigurationNames: "buildkitd"})
			c := &j.Spec.Template.Spec.Containers[0]
			c.Env = append(c.Env, corev1.EnvVar{Name: "BUILDKITD_FLAGS", Value: "--config /etc/buildkit/buildkitd.toml"}, corev1.EnvVar{Name: "HOME", Value: "/root"})
		}})
	requireBuilt(t, res, harborRef("seed-reverse:"+run), "/unique.txt", unique)
}

// seedVolume adds the seed's hand-written CSI volume (driver connectors-csi, connector.name).
func seedVolume(j *batchv1.Job, name, mountPath string, attrs map[string]string) {
	spec := &j.Spec.Template.Spec
	va := map[string]string{policies.CSIAttrConnectorName: connectorName}
	for k, v := range attrs {
		va[k] = v
	}
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
		Driver: policies.CSIDriverName, ReadOnly: ptr(true), VolumeAttributes: va}}})
	spec.Containers[0].VolumeMounts = append(spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: name, MountPath: mountPath, ReadOnly: true})
}

// requireBuilt: the Job succeeded, Harbor serves ref with file holding unique, and nothing
// leaked or ran insecure.
func requireBuilt(t *testing.T, res jobResult, ref, file, unique string) {
	t.Helper()
	require.True(t, res.succeeded, "events:\n%s\nlogs:\n%s", res.events, res.logs)
	requireImageFile(t, ref, file, unique)
	assertClean(t, res)
}

func requireImageFile(t *testing.T, ref, file, unique string) {
	t.Helper()
	assert.Equal(t, unique+"\n", w.fileInImage(t, ref, file), "the pushed image holds this run's file")
}

// insecure matches every way the seed's recipes turned TLS verification or isolation off.
var insecure = regexp.MustCompile(`(?i)tls-verify=false|insecure-registry|--insecure|insecure-entitlements|http *= *true|insecure *= *true|InsecureSkipVerify|allow-insecure`)

// assertClean: no Harbor credential in the pod, its logs or events, and no insecure flag in
// the pod spec (the scripts included).
func assertClean(t *testing.T, res jobResult) {
	t.Helper()
	assertNoCredential(t, res)
	spec, err := json.Marshal(res.pod.Spec)
	require.NoError(t, err)
	assert.NotRegexp(t, insecure, string(spec), "an insecure flag in the pod spec")
}

func hasMount(c corev1.Container, path string) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return true
		}
	}
	return false
}

// awaitPod waits until a bare Pod ends (or cannot pull an image) and gathers every container's
// logs, init containers first.
func awaitPod(t *testing.T, pod *corev1.Pod, timeout time.Duration) jobResult {
	t.Helper()
	ctx := context.Background()
	err := waitForEvery(ctx, time.Second, timeout, func() (bool, error) {
		if err := w.node.Client.Get(ctx, keyOf(pod), pod); err != nil {
			return false, err
		}
		return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || pullFailed(pod), nil
	})
	res := jobResult{pod: *pod, events: podEvents(ctx, t, pod)}
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		res.logs += "--- " + c.Name + "\n" + podLogs(ctx, pod, c.Name)
	}
	res.succeeded = pod.Status.Phase == corev1.PodSucceeded
	require.NoError(t, err, "pod %s/%s did not finish; events:\n%s\nlogs:\n%s", pod.Namespace, pod.Name, res.events, res.logs)
	return res
}

// goRoot is the Go toolchain this suite runs with, which the ko Job borrows.
func goRoot() string {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "/usr/local/go"
	}
	return strings.TrimSpace(string(out))
}
