// Command forkd is the forkd daemon: a pre-fork HTTP/1.1 server configured
// by config.hcl. It is a thin user of the embedding API in package forkd.
package main

import (
	"github.com/forkd/forkd"
	"github.com/forkd/forkd/config"
)

func main() {
	forkd.Main(nil, forkd.WithName("forkd"), forkd.WithConfigFile(config.DefaultFile))
}
