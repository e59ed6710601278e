// etcd for the end-to-end tests' current kube-apiserver (tests/e2e/current.sh builds it): the
// etcd server's own entry point, as its etcd binary runs it.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
