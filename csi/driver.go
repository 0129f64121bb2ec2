package csi

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
)

// Pod information the kubelet adds to the volume context (CSIDriver podInfoOnMount: true) and the
// tokens it requests for the driver (CSIDriver tokenRequests): in the request's secrets with
// serviceAccountTokenInSecrets: true (config/csi; Kubernetes 1.35+, so kubelets do not log them
// with the volume context), in the volume context otherwise.
const (
	ctxPodNamespace = "csi.storage.k8s.io/pod.namespace"
	ctxPodName      = "csi.storage.k8s.io/pod.name"
	ctxEphemeral    = "csi.storage.k8s.io/ephemeral"
	ctxTokens       = "csi.storage.k8s.io/serviceAccount.tokens"
)

// +kubebuilder:rbac:groups=connectors.alauda.io,resources=connectors,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// Driver is the connectors-csi node plugin: CSI Identity and Node services for inline
// ephemeral volumes. It holds no credential and mints no token: the kubelet hands it a pod-bound
// token on every publish and republishes before it expires.
type Driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedNodeServer

	NodeID string
	// Audience of the token the driver puts in the files.
	Audience string
	// Lookup reads connectors and namespaces for the access seam (authorisation) and rendering.
	Lookup access.Source
	// Proxy addresses and the CA bundle rendered into every volume.
	ForwardProxy, ForwardProxyTLS, ReverseHost string
	// CABundle returns the current bundle (re-read so a CA rotation reaches new publishes).
	CABundle func() ([]byte, error)
	// Tmpfs mounts each volume as its own tmpfs (tmpfs.go): the token stays off the node's
	// disk. Off only where the driver cannot mount (unit tests without root).
	Tmpfs bool
}

// Version is the driver's version, reported to the kubelet.
const Version = "0.1.0"

// GetPluginInfo implements csi.IdentityServer.
func (d *Driver) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: policies.CSIDriverName, VendorVersion: Version}, nil
}

// GetPluginCapabilities implements csi.IdentityServer: a node-only plugin has none.
func (d *Driver) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{}, nil
}

// Probe implements csi.IdentityServer.
func (d *Driver) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{}, nil
}

// NodeGetInfo implements csi.NodeServer.
func (d *Driver) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: d.NodeID}, nil
}

// NodeGetCapabilities implements csi.NodeServer: no staging, no stats.
func (d *Driver) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	return &csi.NodeGetCapabilitiesResponse{}, nil
}

// NodePublishVolume renders the pod's files into the target path; called again on every
// republish with a fresh token, it replaces them atomically. A refusal's message reaches the
// pod's events through the kubelet.
func (d *Driver) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	if req.GetTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "target path is required")
	}
	vc := req.GetVolumeContext()
	if vc[ctxEphemeral] != "true" {
		return nil, status.Error(codes.InvalidArgument, "connectors-csi serves only inline ephemeral volumes: declare it under the pod's volumes with csi.driver connectors-csi")
	}
	podNS := vc[ctxPodNamespace]
	if podNS == "" {
		return nil, status.Error(codes.InvalidArgument, "no pod namespace in the volume context: the CSIDriver object needs podInfoOnMount: true")
	}
	attrs, errs := ParseAttributes(vc, podNS)
	if len(errs) > 0 {
		return nil, status.Error(codes.InvalidArgument, errs.ToAggregate().Error())
	}
	tokens, ok := req.GetSecrets()[ctxTokens]
	if !ok {
		tokens = vc[ctxTokens]
	}
	token, err := tokenFor(tokens, d.Audience)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	resolver := access.Resolver{Source: d.Lookup}
	infos := make([]ConnectorInfo, 0, len(attrs.Connectors))
	for _, ref := range attrs.Connectors {
		c, err := resolver.Resolve(ctx, podNS, ref)
		switch {
		case access.IsNotVisible(err):
			return nil, status.Errorf(codes.PermissionDenied, "pod %s/%s: %v", podNS, vc[ctxPodName], err)
		case access.IsNotFound(err):
			return nil, status.Errorf(codes.NotFound, "pod %s/%s: %v: create the Connector or fix the pod's connector annotation", podNS, vc[ctxPodName], err)
		case err != nil:
			return nil, status.Errorf(codes.Unavailable, "pod %s/%s: %v", podNS, vc[ctxPodName], err)
		}
		addr := ""
		if c.Status.Proxy != nil && c.Status.Proxy.HTTPAddress != nil {
			addr = c.Status.Proxy.HTTPAddress.URL
		}
		infos = append(infos, ConnectorInfo{Ref: ref, ProxyAddress: addr})
	}
	bundle, err := d.CABundle()
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "reading the CA bundle: %v", err)
	}
	files, err := Render(RenderInput{Connectors: infos, Token: token, ForwardProxy: d.ForwardProxy, ForwardProxyTLS: d.ForwardProxyTLS,
		ReverseHost: d.ReverseHost, CABundle: bundle, Configurations: attrs.Configurations})
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if d.Tmpfs {
		if err := mountTmpfs(req.GetTargetPath()); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	if err := WriteAtomically(req.GetTargetPath(), files); err != nil {
		return nil, status.Errorf(codes.Internal, "writing files: %v", err)
	}
	// The CA for containers/image, outside ..data: the webhook mounts its directory by subPath.
	if err := WriteInPlace(filepath.Join(req.GetTargetPath(), policies.DirContainersCA), policies.FileCACert, bundle); err != nil {
		return nil, status.Errorf(codes.Internal, "writing files: %v", err)
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

// NodeUnpublishVolume unmounts the volume's tmpfs and removes the pod's files.
func (d *Driver) NodeUnpublishVolume(_ context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	if req.GetTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "target path is required")
	}
	// Whatever Tmpfs says now: the volume may have been published by an earlier driver run.
	if err := unmountTmpfs(req.GetTargetPath()); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := os.RemoveAll(req.GetTargetPath()); err != nil {
		return nil, status.Errorf(codes.Internal, "removing %s: %v", req.GetTargetPath(), err)
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// tokenFor picks the token for the audience from the kubelet's tokens JSON
// ({"<audience>": {"token": "...", "expirationTimestamp": "..."}}).
func tokenFor(raw, audience string) (string, error) {
	if raw == "" {
		return "", fmt.Errorf("the kubelet passed no ServiceAccount token: the CSIDriver object needs tokenRequests with audience %s", audience)
	}
	var tokens map[string]struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(raw), &tokens); err != nil {
		return "", fmt.Errorf("the kubelet's token field does not parse: %v", err)
	}
	t, ok := tokens[audience]
	if !ok || t.Token == "" {
		var have []string
		for a := range tokens {
			have = append(have, a)
		}
		return "", fmt.Errorf("no token for audience %s (have %s): add it to the CSIDriver's tokenRequests", audience, strings.Join(have, ","))
	}
	return t.Token, nil
}
