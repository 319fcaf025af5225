package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
)

func TestCastagnoliMatchesTheRFC3720Vector(t *testing.T) {
	// RFC 3720 B.4: 32 bytes of zeros have CRC32c 0x8a9136aa.
	if got := crc32.Checksum(make([]byte, 32), castagnoli); got != 0x8a9136aa {
		t.Fatalf("crc32c(32 zero bytes) = %#x, want 0x8a9136aa", got)
	}
}

func TestInitRoundTrip(t *testing.T) {
	in := sctpPacket{SrcPort: 40000, DstPort: 80, ChunkType: chunkInit, InitiateTag: 0xdeadbeef, InitialTSN: 7}
	b := in.marshal()
	if len(b) != 32 {
		t.Fatalf("INIT is %d bytes, want 32 (12 header + 20 chunk)", len(b))
	}
	if got := binary.BigEndian.Uint16(b[14:]); got != 20 {
		t.Fatalf("INIT chunk length %d, want 20", got)
	}
	// The checksum is stored least significant byte first over the zeroed field.
	c := bytes.Clone(b)
	clear(c[8:12])
	if binary.LittleEndian.Uint32(b[8:]) != crc32.Checksum(c, castagnoli) {
		t.Fatal("checksum field is not the little-endian CRC32c")
	}
	out, err := parseSCTP(b)
	if err != nil {
		t.Fatal(err)
	}
	if out.SrcPort != 40000 || out.DstPort != 80 || out.InitiateTag != 0xdeadbeef || out.VerificationTag != 0 || out.InitialTSN != 7 {
		t.Fatalf("parsed %+v", out)
	}
}

func TestCorruptPacketIsRejected(t *testing.T) {
	b := sctpPacket{SrcPort: 1, DstPort: 2, ChunkType: chunkInit, InitiateTag: 3}.marshal()
	b[20] ^= 1
	if _, err := parseSCTP(b); !errors.Is(err, errBadChecksum) {
		t.Fatalf("corrupt packet: err %v, want %v", err, errBadChecksum)
	}
}

func TestServerAnswersInitWithInitAckCarryingItsId(t *testing.T) {
	served := func(p uint16) bool { return p == 80 }
	init := sctpPacket{SrcPort: 40000, DstPort: 80, ChunkType: chunkInit, InitiateTag: 0x01020304, InitialTSN: 9}
	in, _ := parseSCTP(init.marshal())
	reply := answerInit(in, served, []byte("x/a"), 0x0a0b0c0d, 5)
	ack, err := parseSCTP(reply)
	if err != nil {
		t.Fatal(err)
	}
	if ack.ChunkType != chunkInitAck || ack.SrcPort != 80 || ack.DstPort != 40000 ||
		ack.VerificationTag != 0x01020304 || ack.InitiateTag != 0x0a0b0c0d || string(ack.Cookie) != "x/a" {
		t.Fatalf("INIT-ACK %+v", ack)
	}
	if len(reply)%4 != 0 {
		t.Fatalf("INIT-ACK of %d bytes is not padded to 4", len(reply))
	}
}

func TestServerAbortsInitToAnUnservedPort(t *testing.T) {
	init := sctpPacket{SrcPort: 40000, DstPort: 82, ChunkType: chunkInit, InitiateTag: 0x01020304}
	in, _ := parseSCTP(init.marshal())
	abort, err := parseSCTP(answerInit(in, func(p uint16) bool { return p == 80 }, nil, 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	if abort.ChunkType != chunkAbort || abort.VerificationTag != 0x01020304 || abort.ChunkFlags != 0 {
		t.Fatalf("ABORT %+v", abort)
	}
}

func TestServerIgnoresAllButInit(t *testing.T) {
	served := func(uint16) bool { return true }
	for _, p := range []sctpPacket{
		{ChunkType: chunkInitAck, VerificationTag: 5, InitiateTag: 6},
		{ChunkType: chunkAbort, VerificationTag: 5},
		{ChunkType: chunkInit, VerificationTag: 5, InitiateTag: 6}, // an INIT must carry tag 0
		{ChunkType: chunkInit, InitiateTag: 0},                     // and a non-zero initiate tag
	} {
		if r := answerInit(p, served, nil, 1, 1); r != nil {
			t.Fatalf("answered %+v", p)
		}
	}
}
