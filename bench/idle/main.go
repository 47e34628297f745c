// Command idle measures what idle keep-alive connections cost a server: it
// opens n connections to addr, sends one request on each and reads the
// answer, then leaves them open and reports how much the resident memory
// of the given processes grew, per connection.
//
//	idle -addr 127.0.0.1:8080 -n 9000 -pids 1234
//
// With -hold it then keeps the connections open until it gets SIGINT or
// SIGTERM (to measure active clients beside idle ones), printing "holding"
// once they are all open.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "server address")
	n := flag.Int("n", 9000, "idle connections to open")
	pids := flag.String("pids", "", "comma-separated pids whose RSS is measured")
	path := flag.String("path", "/", "request path")
	par := flag.Int("parallel", 64, "connections opened at once")
	hold := flag.Bool("hold", false, "keep the connections open until SIGINT/SIGTERM")
	name := flag.String("name", "", "server name for the output line")
	src := flag.Int("src", 0, "connect from 127.0.0.SRC (0: the kernel's choice), for several idle processes")
	flag.Parse()
	firstSource = *src

	var ps []int
	for _, s := range strings.Split(*pids, ",") {
		if s == "" {
			continue
		}
		p, err := strconv.Atoi(s)
		if err != nil {
			log.Fatalf("bad pid %q", s)
		}
		ps = append(ps, p)
	}
	before := rss(ps)
	conns := make([]net.Conn, *n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	next := make(chan int)
	go func() {
		for i := range *n {
			next <- i
		}
		close(next)
	}()
	req := "GET " + *path + " HTTP/1.1\r\nHost: idle\r\n\r\n"
	for range *par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := open(*addr, req, source(i, *n))
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", i, err)
					}
					mu.Unlock()
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		log.Fatal(firstErr)
	}
	// Let the server finish what it does after a response (a goroutine
	// parking, a buffer going back) before measuring.
	time.Sleep(time.Second)
	after := rss(ps)
	per := float64(after-before) / float64(*n)
	fmt.Printf("%s\tconns=%d\trss_before_kib=%d\trss_after_kib=%d\tper_conn_kib=%.2f\n", *name, *n, before, after, per)
	if *hold {
		fmt.Println("holding")
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
	}
	for _, c := range conns {
		c.Close()
	}
}

// perSource is how many connections come from one loopback source address:
// a source address has about 28,000 ephemeral ports (Linux's default
// ip_local_port_range) for one server address, so more connections than
// that come from 127.0.0.2, 127.0.0.3, ... too.
const perSource = 20000

// source returns the local address of connection i of n: nil (the kernel's
// choice) when n fits one source address.
func source(i, n int) *net.TCPAddr {
	switch {
	case n <= perSource && firstSource == 0:
		return nil
	case n <= perSource:
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(firstSource))}
	}
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(max(firstSource, 1)+i%(n/perSource+1)))}
}

// firstSource is -src: the first source address's last byte.
var firstSource int

// open makes one connection from local (nil: any), sends req and reads its
// response.
func open(addr, req string, local *net.TCPAddr) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if local != nil {
		d.LocalAddr = local
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Close {
		c.Close()
		return nil, fmt.Errorf("server closed the connection")
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// rss is the summed VmRSS of pids, in KiB.
func rss(pids []int) int64 {
	var sum int64
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			log.Fatalf("pid %d: %v", p, err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				sum += v
			}
		}
	}
	return sum
}
