package main

// The server: TCP listeners that greet, UDP echo, and an SCTP responder on raw
// sockets (one per address family; it sees every SCTP packet of the namespace and
// answers only INITs, so a client in the same pod can share the namespace).

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

func parsePorts(s string) ([]uint16, error) {
	var ports []uint16
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("bad port %q in --ports %q", f, s)
		}
		ports = append(ports, uint16(n))
	}
	return ports, nil
}

func serveCommand(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	portList := fs.String("ports", "80,81", "comma-separated ports to serve on TCP, UDP and SCTP")
	host, _ := os.Hostname()
	id := fs.String("id", host, "identity the server answers with")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ports, err := parsePorts(*portList)
	if err != nil {
		return err
	}
	errs := make(chan error, 4*len(ports)+2)
	for _, port := range ports {
		addr := net.JoinHostPort("", strconv.Itoa(int(port)))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		go func() { errs <- serveTCP(ln, *id) }()
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		go func() { errs <- serveUDP(pc, *id) }()
	}
	served := func(p uint16) bool {
		for _, q := range ports {
			if p == q {
				return true
			}
		}
		return false
	}
	raw4, err := net.ListenIP("ip4:132", nil)
	if err != nil {
		return fmt.Errorf("SCTP over a raw IPv4 socket (needs CAP_NET_RAW): %w", err)
	}
	go func() { errs <- serveSCTP(raw4, served, *id) }()
	// IPv6 where the namespace has it; a v4-only pod serves v4 only.
	if raw6, err := net.ListenIP("ip6:132", nil); err == nil {
		go func() { errs <- serveSCTP(raw6, served, *id) }()
	}
	fmt.Printf("serving TCP, UDP and SCTP on ports %s as %s\n", *portList, *id)
	return <-errs
}

func serveTCP(ln net.Listener, id string) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			_, _ = c.Write([]byte(id + "\n"))
		}()
	}
}

func serveUDP(pc net.PacketConn, id string) error {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		reply := append(append([]byte(nil), buf[:n]...), []byte(" "+id)...)
		_, _ = pc.WriteTo(reply, from)
	}
}

func serveSCTP(conn *net.IPConn, served func(uint16) bool, id string) error {
	buf := make([]byte, 65536)
	for {
		n, from, err := conn.ReadFromIP(buf)
		if err != nil {
			return err
		}
		in, err := parseSCTP(buf[:n])
		if err != nil {
			if !errors.Is(err, errBadChecksum) {
				fmt.Fprintf(os.Stderr, "sctp from %s: %v\n", from, err)
			}
			continue
		}
		if reply := answerInit(in, served, []byte(id), randomTag(), randomTag()); reply != nil {
			if _, err := conn.WriteToIP(reply, from); err != nil {
				fmt.Fprintf(os.Stderr, "sctp reply to %s: %v\n", from, err)
			}
		}
	}
}

// randomTag is a non-zero 32-bit value (a verification tag must not be 0).
func randomTag() uint32 {
	var b [4]byte
	for {
		_, _ = rand.Read(b[:])
		if v := binary.BigEndian.Uint32(b[:]); v != 0 {
			return v
		}
	}
}
