package main

// SCTP without the kernel's SCTP module: the test machines have none (modprobe
// sctp fails), and a policy suite only needs the first exchange of an association
// to tell "reachable" from "blocked". So the prober speaks just that exchange over
// raw IP sockets (protocol 132): the client sends an INIT, the server answers with
// an INIT-ACK (or an ABORT for a port it does not serve), as a real SCTP stack
// would. Netfilter's conntrack tracks the pair as one association (the INIT-ACK is
// a reply in state ESTABLISHED for `ct state`), provided the verification tags and
// the CRC32c checksum are right, so policies that admit replies by conntrack treat
// these probes as they would real SCTP traffic.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

const (
	protoSCTP        = 132
	chunkInit        = 1
	chunkInitAck     = 2
	chunkAbort       = 6
	paramStateCookie = 7
	commonHeaderLen  = 12
	chunkHeaderLen   = 4
	initFixedLen     = 16 // initiate tag, a_rwnd, streams out/in, initial TSN
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sctpPacket is what the prober reads from or writes into one SCTP packet: the
// common header and its first chunk (INIT, INIT-ACK and ABORT travel alone).
type sctpPacket struct {
	SrcPort, DstPort uint16
	// VerificationTag of the common header: 0 on an INIT, the peer's initiate tag otherwise.
	VerificationTag uint32
	ChunkType       uint8
	ChunkFlags      uint8
	// InitiateTag and InitialTSN of an INIT or INIT-ACK.
	InitiateTag uint32
	InitialTSN  uint32
	// Cookie is the State Cookie parameter of an INIT-ACK (the prober puts the server's id there).
	Cookie []byte
}

func pad4(n int) int { return (n + 3) &^ 3 }

// marshal renders the packet with its CRC32c checksum.
func (p sctpPacket) marshal() []byte {
	var body []byte
	switch p.ChunkType {
	case chunkInit, chunkInitAck:
		body = make([]byte, initFixedLen)
		binary.BigEndian.PutUint32(body[0:], p.InitiateTag)
		binary.BigEndian.PutUint32(body[4:], 65535) // advertised receiver window
		binary.BigEndian.PutUint16(body[8:], 10)    // outbound streams
		binary.BigEndian.PutUint16(body[10:], 10)   // inbound streams
		binary.BigEndian.PutUint32(body[12:], p.InitialTSN)
		if p.ChunkType == chunkInitAck {
			// The State Cookie is mandatory in an INIT-ACK.
			param := make([]byte, pad4(4+len(p.Cookie)))
			binary.BigEndian.PutUint16(param[0:], paramStateCookie)
			binary.BigEndian.PutUint16(param[2:], uint16(4+len(p.Cookie)))
			copy(param[4:], p.Cookie)
			body = append(body, param...)
		}
	}
	chunkLen := chunkHeaderLen + len(body)
	b := make([]byte, commonHeaderLen+pad4(chunkLen))
	binary.BigEndian.PutUint16(b[0:], p.SrcPort)
	binary.BigEndian.PutUint16(b[2:], p.DstPort)
	binary.BigEndian.PutUint32(b[4:], p.VerificationTag)
	b[12] = p.ChunkType
	b[13] = p.ChunkFlags
	binary.BigEndian.PutUint16(b[14:], uint16(chunkLen))
	copy(b[16:], body)
	// RFC 9260 appendix A: CRC32c over the packet with a zero checksum field,
	// stored least significant byte first (as the Linux stack does).
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b, castagnoli))
	return b
}

var errBadChecksum = errors.New("bad CRC32c checksum")

// parseSCTP reads the common header and the first chunk, checking the checksum.
func parseSCTP(b []byte) (sctpPacket, error) {
	var p sctpPacket
	if len(b) < commonHeaderLen+chunkHeaderLen {
		return p, fmt.Errorf("SCTP packet of %d bytes is too short", len(b))
	}
	want := binary.LittleEndian.Uint32(b[8:])
	c := make([]byte, len(b))
	copy(c, b)
	clear(c[8:12])
	if crc32.Checksum(c, castagnoli) != want {
		return p, errBadChecksum
	}
	p.SrcPort = binary.BigEndian.Uint16(b[0:])
	p.DstPort = binary.BigEndian.Uint16(b[2:])
	p.VerificationTag = binary.BigEndian.Uint32(b[4:])
	p.ChunkType = b[12]
	p.ChunkFlags = b[13]
	chunkLen := int(binary.BigEndian.Uint16(b[14:]))
	if chunkLen < chunkHeaderLen || commonHeaderLen+chunkLen > len(b) {
		return p, fmt.Errorf("SCTP chunk length %d does not fit a %d-byte packet", chunkLen, len(b))
	}
	body := b[commonHeaderLen+chunkHeaderLen : commonHeaderLen+chunkLen]
	if p.ChunkType != chunkInit && p.ChunkType != chunkInitAck {
		return p, nil
	}
	if len(body) < initFixedLen {
		return p, fmt.Errorf("SCTP INIT chunk of %d bytes is too short", len(body))
	}
	p.InitiateTag = binary.BigEndian.Uint32(body[0:])
	p.InitialTSN = binary.BigEndian.Uint32(body[12:])
	for params := body[initFixedLen:]; len(params) >= 4; {
		typ := binary.BigEndian.Uint16(params[0:])
		n := int(binary.BigEndian.Uint16(params[2:]))
		if n < 4 || n > len(params) {
			return p, fmt.Errorf("SCTP parameter length %d does not fit", n)
		}
		if typ == paramStateCookie {
			p.Cookie = append([]byte(nil), params[4:n]...)
		}
		params = params[min(pad4(n), len(params)):]
	}
	return p, nil
}

// answerInit is the server side: the reply to an incoming packet, or nil when
// there is none (anything but an INIT, or an INIT that breaks the rules). A served
// port gets an INIT-ACK carrying `id` as its cookie; any other port an ABORT, as an
// SCTP stack answers an INIT to a port without a listener (RFC 9260 8.4).
func answerInit(in sctpPacket, served func(port uint16) bool, id []byte, tag, tsn uint32) []byte {
	if in.ChunkType != chunkInit || in.VerificationTag != 0 || in.InitiateTag == 0 {
		return nil
	}
	out := sctpPacket{
		SrcPort:         in.DstPort,
		DstPort:         in.SrcPort,
		VerificationTag: in.InitiateTag,
	}
	if !served(in.DstPort) {
		out.ChunkType = chunkAbort
		return out.marshal()
	}
	out.ChunkType = chunkInitAck
	out.InitiateTag = tag
	out.InitialTSN = tsn
	out.Cookie = id
	return out.marshal()
}
