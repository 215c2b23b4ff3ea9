// Command etcd is upstream etcd's server, built at the version k8s.io/kubernetes pins
// (go.etcd.io/etcd/server/v3 cannot be `go install`ed: the etcd root module has replace
// directives). Same body as etcd's own main.go.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
