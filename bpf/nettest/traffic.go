package nettest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// RTPStream sends n datagrams of size bytes (size >= 12: an RTP header
// with the sequence number, then pseudo-random payload) from src in the
// from namespace to dst in the to namespace, and checks that every one
// arrives once, from src, byte for byte. The sender keeps at most 64
// datagrams ahead of the receiver, so a loss is the path's, not a full
// socket buffer's. Bounded: n datagrams, timeout for the whole stream.
func RTPStream(from, to *NS, src, dst netip.AddrPort, n, size int, timeout time.Duration) error {
	if size < 12 || n <= 0 || n > 1<<16 {
		return fmt.Errorf("nettest: RTPStream: bad n %d or size %d", n, size)
	}
	rx, err := listenUDPIn(to, dst)
	if err != nil {
		return err
	}
	defer rx.Close()
	tx, err := listenUDPIn(from, src)
	if err != nil {
		return err
	}
	defer tx.Close()

	rng := rand.New(rand.NewPCG(uint64(n), uint64(size)))
	want := make([][]byte, n)
	for i := range want {
		p := make([]byte, size)
		p[0], p[1] = 0x80, 0 // RTP v2, PCMU
		binary.BigEndian.PutUint16(p[2:], uint16(i))
		binary.BigEndian.PutUint32(p[4:], uint32(i*160))
		binary.BigEndian.PutUint32(p[8:], 0x5348414b) // SSRC
		for j := 12; j < size; j++ {
			p[j] = byte(rng.Uint32())
		}
		want[i] = p
	}

	deadline := time.Now().Add(timeout)
	var received atomic.Int64
	got := make([]bool, n)
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, size+1)
		_ = rx.SetReadDeadline(deadline)
		for int(received.Load()) < n {
			m, from, err := rx.ReadFromUDPAddrPort(buf)
			if err != nil {
				errc <- fmt.Errorf("nettest: RTP stream: %d of %d datagrams arrived: %w", received.Load(), n, err)
				return
			}
			if from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port()); from != src {
				errc <- fmt.Errorf("nettest: RTP stream: datagram from %v, want %v", from, src)
				return
			}
			if m < 12 {
				errc <- fmt.Errorf("nettest: RTP stream: %d-byte datagram", m)
				return
			}
			seq := int(binary.BigEndian.Uint16(buf[2:]))
			if seq >= n || got[seq] {
				errc <- fmt.Errorf("nettest: RTP stream: unexpected or repeated sequence number %d", seq)
				return
			}
			if !bytes.Equal(buf[:m], want[seq]) {
				errc <- fmt.Errorf("nettest: RTP stream: datagram %d arrived changed (%d bytes, want %d)", seq, m, size)
				return
			}
			got[seq] = true
			received.Add(1)
		}
		errc <- nil
	}()

	for i := 0; i < n; i++ {
		for i-int(received.Load()) >= 64 {
			if time.Now().After(deadline) {
				break
			}
			select {
			case err := <-errc:
				return err
			case <-time.After(100 * time.Microsecond):
			}
		}
		if _, err := tx.WriteToUDPAddrPort(want[i], dst); err != nil {
			return fmt.Errorf("nettest: RTP stream: send %d: %w", i, err)
		}
	}
	if err := <-errc; err != nil {
		var missing []int
		for i, ok := range got {
			if !ok && len(missing) < 10 {
				missing = append(missing, i)
			}
		}
		return fmt.Errorf("%w (first missing: %v)", err, missing)
	}
	return nil
}

func listenUDPIn(ns *NS, addr netip.AddrPort) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := ns.Do(func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	return c, err
}

// TCPExchange connects from the client namespace to dst in the server
// namespace, sends up, and the server answers with down once it has read
// all of up; both sides check that they read exactly what the other
// wrote. Bounded by timeout.
func TCPExchange(client, server *NS, dst netip.AddrPort, up, down []byte, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var ln net.Listener
	if err := server.Do(func() (err error) {
		ln, err = net.Listen("tcp", dst.String())
		return err
	}); err != nil {
		return fmt.Errorf("nettest: TCP listen: %w", err)
	}
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(deadline)
		got := make([]byte, len(up))
		if _, err := io.ReadFull(c, got); err != nil {
			srvErr <- fmt.Errorf("server read: %w", err)
			return
		}
		if !bytes.Equal(got, up) {
			srvErr <- errors.New("server read different bytes than the client sent")
			return
		}
		if _, err := c.Write(down); err != nil {
			srvErr <- fmt.Errorf("server write: %w", err)
			return
		}
		srvErr <- nil
	}()

	var conn net.Conn
	if err := client.Do(func() (err error) {
		d := net.Dialer{Deadline: deadline}
		conn, err = d.Dial("tcp", dst.String())
		return err
	}); err != nil {
		return fmt.Errorf("nettest: TCP connect to %v: %w", dst, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	if _, err := conn.Write(up); err != nil {
		return fmt.Errorf("nettest: TCP client write: %w", err)
	}
	got := make([]byte, len(down))
	_, rerr := io.ReadFull(conn, got)
	if err := <-srvErr; err != nil {
		return fmt.Errorf("nettest: TCP %s", err)
	}
	if rerr != nil {
		return fmt.Errorf("nettest: TCP client read: %w", rerr)
	}
	if !bytes.Equal(got, down) {
		return errors.New("nettest: TCP client read different bytes than the server sent")
	}
	return nil
}
