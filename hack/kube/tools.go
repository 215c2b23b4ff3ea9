//go:build tools

// Package tools pins the Kubernetes commands that scripts/kube-build.sh builds, so that
// `go mod tidy` keeps every module they need in go.mod and go.sum. Never compiled.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
