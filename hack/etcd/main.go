// Command etcd is the lab's etcd server: the upstream etcd 3.5 entry point,
// built from Go modules by hack/build-tools.sh so no prebuilt binary is fetched.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
