package main

// The client: every target probed at once, each within the timeout, so a round
// over a whole matrix costs about one timeout however many targets are blocked.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type target struct {
	Proto string `json:"proto"`
	IP    string `json:"ip"`
	Port  int    `json:"port"`
}

type result struct {
	Proto  string `json:"proto"`
	IP     string `json:"ip"`
	Port   int    `json:"port"`
	Result string `json:"result"`
	Answer string `json:"answer,omitempty"`
	Ms     int64  `json:"ms"`
	Detail string `json:"detail,omitempty"`
}

const (
	reachable = "reachable"
	timedOut  = "timeout"
	refused   = "refused"
	failed    = "error"
)

// resendEvery is how often UDP and SCTP probes repeat their datagram within the
// timeout, so one lost packet (a neighbour still resolving) is not a "blocked".
const resendEvery = 200 * time.Millisecond

func probeCommand(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	timeout := fs.Duration("timeout", time.Second, "how long each probe waits for an answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var targets []target
	if err := json.NewDecoder(stdin).Decode(&targets); err != nil {
		return fmt.Errorf("reading the targets (a JSON list of {proto, ip, port}) from stdin: %w", err)
	}
	sctp := newSCTPClient()
	defer sctp.close()
	results := make([]result, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = probeOne(t, *timeout, sctp)
		}()
	}
	wg.Wait()
	return json.NewEncoder(stdout).Encode(results)
}

func probeOne(t target, timeout time.Duration, sctp *sctpClient) result {
	start := time.Now()
	r := result{Proto: t.Proto, IP: t.IP, Port: t.Port}
	ip := net.ParseIP(t.IP)
	var answer string
	var err error
	switch {
	case ip == nil:
		err = fmt.Errorf("bad IP address %q", t.IP)
	case t.Port <= 0 || t.Port > 65535:
		err = fmt.Errorf("bad port %d", t.Port)
	default:
		deadline := start.Add(timeout)
		addr := net.JoinHostPort(ip.String(), strconv.Itoa(t.Port))
		switch strings.ToUpper(t.Proto) {
		case "TCP":
			answer, err = probeTCP(addr, deadline)
		case "UDP":
			answer, err = probeUDP(addr, deadline)
		case "SCTP":
			answer, err = sctp.probe(ip, uint16(t.Port), deadline)
		default:
			err = fmt.Errorf("unknown protocol %q (TCP, UDP or SCTP)", t.Proto)
		}
	}
	r.Ms = time.Since(start).Milliseconds()
	r.Result, r.Detail = classify(err)
	if err == nil {
		r.Answer = answer
	}
	return r
}

func classify(err error) (string, string) {
	var ne net.Error
	switch {
	case err == nil:
		return reachable, ""
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return timedOut, ""
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM), errors.Is(err, errAborted):
		return refused, err.Error()
	default:
		return failed, err.Error()
	}
}

// probeTCP connects and reads the server's one-line greeting.
func probeTCP(addr string, deadline time.Time) (string, error) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	var line []byte
	buf := make([]byte, 256)
	for !strings.Contains(string(line), "\n") {
		n, err := c.Read(buf)
		line = append(line, buf[:n]...)
		if err != nil {
			if errors.Is(err, io.EOF) && len(line) > 0 {
				break
			}
			return "", err
		}
	}
	return strings.TrimSpace(string(line)), nil
}

// probeUDP sends a nonce until the server echoes it back (with its id appended).
func probeUDP(addr string, deadline time.Time) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	nonce := fmt.Sprintf("wiremesh-prober %08x", randomTag())
	buf := make([]byte, 2048)
	for time.Now().Before(deadline) {
		if _, err := c.Write([]byte(nonce)); err != nil {
			return "", err
		}
		_ = c.SetReadDeadline(minTime(time.Now().Add(resendEvery), deadline))
		for {
			n, err := c.Read(buf)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				return "", err
			}
			if reply := string(buf[:n]); strings.HasPrefix(reply, nonce+" ") {
				return strings.TrimPrefix(reply, nonce+" "), nil
			}
		}
	}
	return "", os.ErrDeadlineExceeded
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

var errAborted = errors.New("SCTP ABORT: no server on that port")

// sctpClient shares one raw socket per address family between all SCTP probes of
// a run; a reader per socket hands each INIT-ACK or ABORT to the probe whose
// initiate tag it carries.
type sctpClient struct {
	mu      sync.Mutex
	conns   map[bool]*net.IPConn // keyed by "is IPv6"
	waiting map[uint32]*sctpWait
	ports   map[uint16]bool
}

type sctpWait struct {
	ip      net.IP
	port    uint16 // the target's
	srcPort uint16 // ours
	done    chan sctpPacket
}

func newSCTPClient() *sctpClient {
	return &sctpClient{
		conns:   map[bool]*net.IPConn{},
		waiting: map[uint32]*sctpWait{},
		ports:   map[uint16]bool{},
	}
}

func (s *sctpClient) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

func (s *sctpClient) conn(v6 bool) (*net.IPConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.conns[v6]; c != nil {
		return c, nil
	}
	network := "ip4:132"
	if v6 {
		network = "ip6:132"
	}
	c, err := net.ListenIP(network, nil)
	if err != nil {
		return nil, fmt.Errorf("SCTP over a raw socket (needs CAP_NET_RAW): %w", err)
	}
	s.conns[v6] = c
	go s.read(c)
	return c, nil
}

func (s *sctpClient) read(c *net.IPConn) {
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFromIP(buf)
		if err != nil {
			return
		}
		p, err := parseSCTP(buf[:n])
		if err != nil || (p.ChunkType != chunkInitAck && p.ChunkType != chunkAbort) {
			continue
		}
		s.mu.Lock()
		w := s.waiting[p.VerificationTag]
		s.mu.Unlock()
		if w != nil && w.ip.Equal(from.IP) && p.SrcPort == w.port && p.DstPort == w.srcPort {
			select {
			case w.done <- p:
			default:
			}
		}
	}
}

// register picks an initiate tag and a source port no other probe of this run uses.
func (s *sctpClient) register(ip net.IP, port uint16) (uint32, *sctpWait) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := &sctpWait{ip: ip, port: port, done: make(chan sctpPacket, 1)}
	for w.srcPort == 0 || s.ports[w.srcPort] {
		w.srcPort = uint16(32768 + rand.IntN(28232))
	}
	tag := randomTag()
	for s.waiting[tag] != nil {
		tag = randomTag()
	}
	s.waiting[tag] = w
	s.ports[w.srcPort] = true
	return tag, w
}

func (s *sctpClient) unregister(tag uint32, w *sctpWait) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.waiting, tag)
	delete(s.ports, w.srcPort)
}

func (s *sctpClient) probe(ip net.IP, port uint16, deadline time.Time) (string, error) {
	v6 := ip.To4() == nil
	c, err := s.conn(v6)
	if err != nil {
		return "", err
	}
	tag, w := s.register(ip, port)
	defer s.unregister(tag, w)
	init := sctpPacket{
		SrcPort:     w.srcPort,
		DstPort:     port,
		ChunkType:   chunkInit,
		InitiateTag: tag,
		InitialTSN:  randomTag(),
	}.marshal()
	dst := &net.IPAddr{IP: ip}
	for time.Now().Before(deadline) {
		if _, err := c.WriteToIP(init, dst); err != nil {
			return "", err
		}
		timer := time.NewTimer(time.Until(minTime(time.Now().Add(resendEvery), deadline)))
		select {
		case p := <-w.done:
			timer.Stop()
			if p.ChunkType == chunkAbort {
				return "", errAborted
			}
			return string(p.Cookie), nil
		case <-timer.C:
		}
	}
	return "", os.ErrDeadlineExceeded
}
