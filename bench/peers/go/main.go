// go-peer: the Go peer of corio's benchmark suite (the peer contract of issue 7; the micro
// benchmarks are defined in bench/README.md, "What is measured").
//
//	go-peer echo PORT        TCP echo server on 127.0.0.1:PORT (0: the kernel picks a port)
//	go-peer http PORT        HTTP/1.1 "hello" server, requests parsed by hand on package net
//	go-peer nethttp PORT     the same answer from net/http, as a Go user would write it
//	go-peer micro [--quick]  micro benchmarks, one JSON object per line on stdout
//
// This is the classic Go server: runtime.GOMAXPROCS(1) at start, so that one OS thread at a time
// runs Go code (the runtime keeps its own helper threads, e.g. sysmon, as every Go program does),
// and one goroutine per connection doing blocking-style Read and Write, which the runtime turns
// into waits on its epoll-based netpoller. Standard library only.
//
// The servers print the port they listen on as one line on stdout and exit with status 0 on
// SIGTERM or SIGINT. Accepted connections have TCP_NODELAY: package net sets it on every TCP
// connection by default (see (*net.TCPConn).SetNoDelay), so no extra system call is made here.
//
// Micro benchmarks (N full / --quick), in the order they run:
//
//	suspended_task_bytes  N = 100,000 / 20,000 goroutines blocked receiving from one shared
//	                      channel; growth of the resident set / N. Runs first.
//	spawn_join            N = 1,000,000 / 100,000 times `go trivial(results)` then one receive
//	                      from `results`, an unbuffered channel reused by every task, which
//	                      carries the task's return value 1. Of the idiomatic joins (a channel
//	                      made per task, sync.WaitGroup, a reused channel) this one is the
//	                      cheapest: it allocates nothing per task but the goroutine.
//	ping_pong             N = 1,000,000 / 100,000 round trips between two goroutines through two
//	                      unbuffered channels, Go's cheapest one-shot wake-up: a send to a
//	                      goroutine parked in a receive hands the value over directly and makes
//	                      it runnable. Time / 2N (per hand-off).
//	timers_1m             N = 1,000,000 / 100,000 time.AfterFunc (callback timers) with delays
//	timers_1m_total       (i % 1000) ms; each callback runs in a goroutine of its own, as
//	                      AfterFunc documents. Overhead beyond 0.999 s, and the whole wall time.
//
// Durations come from time.Now and Time.Sub, which use the monotonic clock reading that time.Now
// carries.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	peerName = "go"

	// readSize is the most one Read asks for, on echo and HTTP connections alike.
	readSize = 64 << 10

	// maxHeaderSection is the longest request (up to and including "\r\n\r\n") the HTTP
	// servers accept; a longer one closes the connection.
	maxHeaderSection = 8 << 10

	helloResponse = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\n" +
		"Hello, World!\n"
	helloBody = "Hello, World!\n"
)

func main() {
	runtime.GOMAXPROCS(1)
	if len(os.Args) < 2 {
		usage()
	}
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "echo":
		serve(args, handleEcho)
	case "http":
		serve(args, handleHTTP)
	case "nethttp":
		serveNetHTTP(args)
	case "micro":
		quick := false
		for _, a := range args {
			if a != "--quick" {
				usage()
			}
			quick = true
		}
		runMicro(quick)
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: go-peer echo PORT | http PORT | nethttp PORT | micro [--quick]")
	os.Exit(2)
}

// fatalf reports an error that stops the whole program and exits with status 1.
func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "go-peer: "+format+"\n", args...)
	os.Exit(1)
}

// --- server start-up ---------------------------------------------------------------------------

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit, so that the server can hold as
// many connections as the system lets it. (Go 1.19's package os already does this at start-up;
// doing it here keeps the contract explicit and independent of that.)
func raiseFileLimit() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fatalf("getrlimit(RLIMIT_NOFILE): %v", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			fatalf("setrlimit(RLIMIT_NOFILE, %d): %v", lim.Max, err)
		}
	}
}

// exitOnSignal makes SIGTERM and SIGINT end the program with status 0. Open connections are
// dropped as the process exits, which the contract allows.
func exitOnSignal() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		os.Exit(0)
	}()
}

// listen does the common start-up of the servers: file limit, signals, a listener on
// 127.0.0.1:PORT, and the bound port printed as one line on stdout. Package net listens with
// the backlog of /proc/sys/net/core/somaxconn (4096 on current kernels), which is also the
// kernel's cap on any backlog.
func listen(args []string) net.Listener {
	if len(args) != 1 {
		usage()
	}
	port, err := strconv.ParseUint(args[0], 10, 16)
	if err != nil {
		fatalf("invalid port %q: expected a number from 0 to 65535", args[0])
	}
	raiseFileLimit()
	exitOnSignal()
	ln, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.FormatUint(port, 10)))
	if err != nil {
		fatalf("listen: %v", err)
	}
	// os.Stdout is not buffered: the line is written out at once.
	if _, err := fmt.Println(ln.Addr().(*net.TCPAddr).Port); err != nil {
		fatalf("writing the port to stdout: %v", err)
	}
	return ln
}

// serve accepts connections forever, one goroutine running handle per connection.
func serve(args []string, handle func(net.Conn)) {
	ln := listen(args)
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			// Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS...) passes: wait a
			// little, as net/http does, instead of spinning or giving up on every client.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff *= 2; backoff > time.Second {
				backoff = time.Second
			}
			log.Printf("go-peer: accept: %v; retrying in %v", err, backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go handle(conn)
	}
}

// closeConn closes a connection after an error. End of stream, a reset or a broken pipe are the
// peer's doing and not worth a message; anything else is reported. Either way only this
// connection is affected.
func closeConn(conn net.Conn, err error) {
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) &&
		!errors.Is(err, syscall.EPIPE) {
		log.Printf("go-peer: connection from %v: %v", conn.RemoteAddr(), err)
	}
	conn.Close() // an error here changes nothing: the descriptor is released either way
}

// --- echo --------------------------------------------------------------------------------------

// handleEcho sends back every byte it reads. Write returns only once all of buf[:n] is written,
// so the next Read comes after the echo: TCP's flow control slows down a client that does not
// read its echoes.
func handleEcho(conn net.Conn) {
	buf := make([]byte, readSize)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				closeConn(conn, werr)
				return
			}
		}
		if err != nil {
			closeConn(conn, err)
			return
		}
	}
}

// --- http (by hand) ----------------------------------------------------------------------------

// requestScanner counts the requests in a byte stream: a request is everything up to and
// including the first "\r\n\r\n". Nothing of the request is kept (the answer does not depend on
// it), so a request split over several reads costs no copy.
type requestScanner struct {
	matched int // how many bytes of "\r\n\r\n" end what was fed so far (0 to 3)
	length  int // bytes of the request in progress fed so far
}

const terminator = "\r\n\r\n"

// feed scans data and returns how many requests it completes; ok is false once a request is
// longer than maxHeaderSection, after which the connection must be closed.
func (s *requestScanner) feed(data []byte) (requests int, ok bool) {
	for i := 0; i < len(data); {
		if s.matched == 0 {
			// Most bytes are not '\r': skip to the next one with the vectorised search.
			j := bytes.IndexByte(data[i:], '\r')
			if j < 0 {
				s.length += len(data) - i
				break
			}
			i += j + 1
			s.length += j + 1
			s.matched = 1
			continue
		}
		b := data[i]
		i++
		s.length++
		switch {
		case b == terminator[s.matched]:
			s.matched++
			if s.matched == len(terminator) {
				if s.length > maxHeaderSection {
					return requests, false
				}
				requests++
				s.matched, s.length = 0, 0
			}
		case b == '\r': // "\r\r" or "\r\n\r\r": this '\r' may start the terminator
			s.matched = 1
		default:
			s.matched = 0
		}
	}
	return requests, s.length <= maxHeaderSection
}

// responseBatch holds helloResponse responseBatchSize times: the answer to that many requests
// parsed from one read, written without building anything per connection.
const responseBatchSize = 128

var responseBatch = []byte(strings.Repeat(helloResponse, responseBatchSize))

// writeResponses writes n responses in one system call: one write, or one writev of repeated
// batches when n is larger than a batch (a long pipelined burst).
func writeResponses(conn net.Conn, n int) error {
	if n <= responseBatchSize {
		_, err := conn.Write(responseBatch[:n*len(helloResponse)])
		return err
	}
	bufs := make(net.Buffers, 0, n/responseBatchSize+1)
	for ; n >= responseBatchSize; n -= responseBatchSize {
		bufs = append(bufs, responseBatch)
	}
	if n > 0 {
		bufs = append(bufs, responseBatch[:n*len(helloResponse)])
	}
	_, err := bufs.WriteTo(conn)
	return err
}

// handleHTTP answers every request of a keep-alive connection, in order, until the client
// closes it. The responses to the requests of one read go out together before the next read.
func handleHTTP(conn net.Conn) {
	buf := make([]byte, readSize)
	var scanner requestScanner
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			requests, ok := scanner.feed(buf[:n])
			if requests > 0 {
				if werr := writeResponses(conn, requests); werr != nil {
					closeConn(conn, werr)
					return
				}
			}
			if !ok {
				closeConn(conn, nil) // a request header section over 8 KiB
				return
			}
		}
		if err != nil {
			closeConn(conn, err)
			return
		}
	}
}

// --- nethttp -----------------------------------------------------------------------------------

// serveNetHTTP serves the hello body with net/http, written as a Go user would: a handler that
// sets the headers and writes the body. net/http adds a Date header of its own, so its
// responses are a few bytes longer than the hand-written server's.
func serveNetHTTP(args []string) {
	ln := listen(args)
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/plain")
		h.Set("Content-Length", strconv.Itoa(len(helloBody)))
		// An error here means the client went away; net/http closes the connection.
		_, _ = io.WriteString(w, helloBody)
	})
	server := &http.Server{
		Handler:        hello,
		MaxHeaderBytes: maxHeaderSection,
		// Quiet about clients that hang up mid-request, as the other servers are.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	err := server.Serve(ln)
	fatalf("net/http: %v", err)
}

// --- micro benchmarks --------------------------------------------------------------------------

func report(bench string, value float64, unit string) {
	// The format is fixed and the values are finite numbers, so no JSON encoder is needed;
	// strconv's 'g' form (e.g. 1.5e-05) is valid JSON.
	fmt.Printf("{\"peer\": %q, \"bench\": %q, \"value\": %s, \"unit\": %q}\n",
		peerName, bench, strconv.FormatFloat(value, 'g', -1, 64), unit)
}

func runMicro(quick bool) {
	pick := func(full, small int) int {
		if quick {
			return small
		}
		return full
	}
	// First, while the heap holds nothing freed that the goroutines' memory could reuse.
	report("suspended_task_bytes", suspendedTaskBytes(pick(100_000, 20_000)), "bytes/task")
	report("spawn_join", spawnJoin(pick(1_000_000, 100_000)), "ns/op")
	report("ping_pong", pingPong(pick(1_000_000, 100_000)), "ns/op")
	total := timers(pick(1_000_000, 100_000))
	report("timers_1m", total-0.999, "s")
	report("timers_1m_total", total, "s")
}

// residentBytes is the resident set size of the process, from /proc/self/statm.
func residentBytes() int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		fatalf("reading /proc/self/statm: %v", err)
	}
	fields := strings.Fields(string(data))
	if len(fields) < 2 {
		fatalf("unexpected /proc/self/statm: %q", data)
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		fatalf("unexpected /proc/self/statm: %q", data)
	}
	return pages * int64(os.Getpagesize())
}

// suspendedTaskBytes starts n goroutines that all block receiving from one channel and returns
// the growth of the resident set per goroutine once all of them are parked; closing the
// channel then wakes them all, and they are joined.
func suspendedTaskBytes(n int) float64 {
	runtime.GC()
	before := residentBytes()

	wake := make(chan struct{})
	var parked atomic.Int64
	var done sync.WaitGroup
	done.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			parked.Add(1)
			<-wake
			done.Done()
		}()
	}
	// With one P, a goroutine that has counted itself runs on into its receive and parks
	// before this one is scheduled again.
	for parked.Load() < int64(n) {
		runtime.Gosched()
	}
	after := residentBytes()

	close(wake)
	done.Wait()
	return float64(after-before) / float64(n)
}

func trivial(results chan<- int) {
	results <- 1
}

func spawnJoin(n int) float64 {
	results := make(chan int)
	sum := 0
	start := time.Now()
	for i := 0; i < n; i++ {
		go trivial(results)
		sum += <-results
	}
	elapsed := time.Since(start)
	if sum != n {
		fatalf("spawn_join: the tasks returned %d in all, expected %d", sum, n)
	}
	return float64(elapsed.Nanoseconds()) / float64(n)
}

func pingPong(n int) float64 {
	toA, toB := make(chan struct{}), make(chan struct{})
	var done sync.WaitGroup
	done.Add(2)
	start := time.Now()
	go func() { // B: waits for A, hands control back
		defer done.Done()
		for i := 0; i < n; i++ {
			<-toB
			toA <- struct{}{}
		}
	}()
	go func() { // A: hands control to B, waits for it
		defer done.Done()
		for i := 0; i < n; i++ {
			toB <- struct{}{}
			<-toA
		}
	}()
	done.Wait()
	return float64(time.Since(start).Nanoseconds()) / float64(2*n)
}

// timers arms n one-shot callback timers with delays (i % 1000) ms and returns the wall time
// in seconds from before the first time.AfterFunc until the last callback has run.
func timers(n int) float64 {
	var delays [1000]time.Duration
	for i := range delays {
		delays[i] = time.Duration(i) * time.Millisecond
	}
	var fired atomic.Int64
	last := make(chan time.Time, 1)
	callback := func() {
		if fired.Add(1) == int64(n) {
			last <- time.Now()
		}
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		time.AfterFunc(delays[i%len(delays)], callback)
	}
	return (<-last).Sub(start).Seconds()
}
