package bpf

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Limits fixed by the BPF program (steer.c).
const (
	MaxSIPPorts = 8  // MAX_SIP_PORTS
	MaxIfaces   = 63 // MAX_IFACES minus the slot for unknown interfaces

	// DefaultStaleAfter is how old the heartbeat may get before INVITEs
	// are forwarded unsigned (fail-open).
	DefaultStaleAfter = 500 * time.Millisecond
)

// Sentinel errors.
var (
	ErrConfig     = errors.New("bpf: invalid config")
	ErrAttach     = errors.New("bpf: attach failed")
	ErrClosed     = errors.New("bpf: closed")
	ErrNoAddr     = errors.New("bpf: interface has no steering address")
	ErrFamily     = errors.New("bpf: flow addresses of different or unknown family")
	ErrWouldBlock = errors.New("bpf: send would block")
)

// AttachMode selects how the XDP program is attached.
type AttachMode int

const (
	// ModeAuto tries native (driver) mode and falls back to generic (SKB)
	// mode with a warning in the log.
	ModeAuto AttachMode = iota
	// ModeNative requires driver mode.
	ModeNative
	// ModeGeneric forces generic mode.
	ModeGeneric
)

// Config configures Attach.
type Config struct {
	// Ifaces are the interfaces to attach to: every interface SIP traffic
	// arrives on, and every interface XDP should be able to forward to
	// (XDP redirects only between attached interfaces).
	Ifaces []string
	// SIPPorts are the UDP destination ports whose INVITEs are steered.
	// Default: 5060. At most MaxSIPPorts.
	SIPPorts []uint16
	// SteerPort is the UDP port of the userspace steering socket, which
	// must listen on the wildcard address (or on each steering address).
	// Required.
	SteerPort uint16
	// SteerAddrs overrides the steering addresses of an interface (at most
	// one IPv4 and one IPv6). By default the first IPv4 address and the
	// first global unicast IPv6 address of the interface are used; a
	// family without an address is not steered on that interface.
	SteerAddrs map[string][]netip.Addr
	// StaleAfter is the heartbeat age after which INVITEs are no longer
	// steered. Default DefaultStaleAfter; at most 1 s is sensible.
	StaleAfter time.Duration
	// Mode is the XDP attach mode. Default ModeAuto.
	Mode AttachMode
	// Logger receives attach-mode decisions. Default slog.Default().
	Logger *slog.Logger
}

type attached struct {
	name    string
	ifindex int
	slot    uint16
	mode    string // "native" or "generic"
	link    link.Link
	val     steerIface
	driver  string // ETHTOOL_GDRVINFO driver name ("veth", "ixgbe", ...)

	// redirect: the interface is in tx_ports, i.e. takes frames
	// redirected by XDP (see redirect.go); why says why (not).
	redirect    bool
	redirectWhy string
}

// Steering is the loaded and attached XDP program. Its methods are safe for
// concurrent use.
type Steering struct {
	mu     sync.Mutex
	objs   steerObjects
	ifaces []attached
	cfg    steerConfig
	closed bool

	// Heartbeat scratch, guarded by mu (keeps Heartbeat allocation-free).
	hbKey uint32
	hbVal uint64
	ts    unix.Timespec

	// Redirect targets (redirect.go): nd is nil on kernels without the
	// netdev netlink family; the watcher goroutine ends when Close wakes
	// events and closes watchDone.
	log       *slog.Logger
	nd        *netdevConn
	events    *linkEvents
	watchDone chan struct{}
	stopOnce  sync.Once
}

// Attach loads the XDP program, fills its maps from cfg and attaches it to
// every interface in cfg.Ifaces. Steering starts enabled with a fresh
// heartbeat; the caller must call Heartbeat at least every StaleAfter/2
// (100 ms is a good period) from the loop that serves the steering socket.
// Attach must run in the network namespace that holds the interfaces.
func Attach(cfg Config) (*Steering, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}

	s, err := load(cfg)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()

	s.log = log
	for i := range s.ifaces {
		a := &s.ifaces[i]
		l, mode, err := attachXDP(s.objs.XdpSteer, a.ifindex, cfg.Mode)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrAttach, a.name, err)
		}
		a.link, a.mode = l, mode
		verify, err := s.setIfaceFlags(a)
		if err != nil {
			return nil, err
		}
		if mode == "generic" && cfg.Mode == ModeAuto {
			log.Warn("bpf: native XDP unavailable, attached in generic mode", "iface", a.name, "driver", a.driver)
		} else {
			log.Info("bpf: XDP attached", "iface", a.name, "mode", mode, "driver", a.driver, "checksum_verify", verify)
		}
	}
	if err := s.startRedirectWatch(); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// load loads the objects and fills the maps without attaching anything.
func load(cfg Config) (*Steering, error) {
	if len(cfg.Ifaces) == 0 || len(cfg.Ifaces) > MaxIfaces {
		return nil, fmt.Errorf("%w: need 1..%d interfaces, got %d", ErrConfig, MaxIfaces, len(cfg.Ifaces))
	}
	if cfg.SteerPort == 0 {
		return nil, fmt.Errorf("%w: steering port is required", ErrConfig)
	}
	ports := cfg.SIPPorts
	if len(ports) == 0 {
		ports = []uint16{5060}
	}
	if len(ports) > MaxSIPPorts {
		return nil, fmt.Errorf("%w: at most %d SIP ports", ErrConfig, MaxSIPPorts)
	}
	for _, p := range ports {
		if p == 0 || p == cfg.SteerPort {
			return nil, fmt.Errorf("%w: bad SIP port %d", ErrConfig, p)
		}
	}
	stale := cfg.StaleAfter
	if stale <= 0 {
		stale = DefaultStaleAfter
	}
	s := &Steering{}
	if err := loadSteerObjects(&s.objs, nil); err != nil {
		return nil, fmt.Errorf("bpf: load: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()

	var cookie [8]byte
	if _, err := rand.Read(cookie[:]); err != nil {
		return nil, fmt.Errorf("bpf: cookie: %w", err)
	}
	s.cfg = steerConfig{
		StaleNs:   uint64(stale.Nanoseconds()),
		Cookie:    binary.NativeEndian.Uint64(cookie[:]),
		Enabled:   1,
		SteerPort: htons(cfg.SteerPort),
		Nports:    uint16(len(ports)),
	}
	for i, p := range ports {
		s.cfg.SipPorts[i] = htons(p)
	}
	if err := s.objs.ConfigMap.Put(uint32(0), &s.cfg); err != nil {
		return nil, fmt.Errorf("bpf: config map: %w", err)
	}

	for i, name := range cfg.Ifaces {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("%w: interface %q: %w", ErrConfig, name, err)
		}
		val, err := ifaceValue(ifc, cfg.SteerAddrs[name])
		if err != nil {
			return nil, err
		}
		val.Slot = uint16(i + 1)
		if err := s.objs.Ifaces.Put(uint32(ifc.Index), &val); err != nil {
			return nil, fmt.Errorf("bpf: ifaces map: %w", err)
		}
		// tx_ports stays empty until Attach has learnt which interfaces
		// take redirected frames (redirect.go).
		s.ifaces = append(s.ifaces, attached{name: name, ifindex: ifc.Index, slot: val.Slot, val: val,
			driver: driverName(name)})
	}
	s.Heartbeat()

	ok = true
	return s, nil
}

func attachXDP(prog *ebpf.Program, ifindex int, mode AttachMode) (link.Link, string, error) {
	if mode != ModeGeneric {
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
		if err == nil {
			return l, "native", nil
		}
		if mode == ModeNative {
			return nil, "", err
		}
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPGenericMode})
	if err != nil {
		return nil, "", err
	}
	return l, "generic", nil
}

func ifaceValue(ifc *net.Interface, override []netip.Addr) (steerIface, error) {
	var v steerIface
	if len(ifc.HardwareAddr) != 6 {
		return v, fmt.Errorf("%w: interface %q is not Ethernet", ErrConfig, ifc.Name)
	}
	copy(v.Mac[:], ifc.HardwareAddr)
	addrs := override
	if addrs == nil {
		ias, err := ifc.Addrs()
		if err != nil {
			return v, fmt.Errorf("bpf: addresses of %q: %w", ifc.Name, err)
		}
		for _, ia := range ias {
			if n, ok := ia.(*net.IPNet); ok {
				if a, ok := netip.AddrFromSlice(n.IP); ok {
					addrs = append(addrs, a.Unmap())
				}
			}
		}
	}
	for _, a := range addrs {
		switch {
		case a.Is4() && v.HasV4 == 0:
			b := a.As4()
			v.SteerV4 = binary.NativeEndian.Uint32(b[:]) // stored as network-order bytes
			v.HasV4 = 1
		case a.Is6() && !a.Is4In6() && v.HasV6 == 0 && (override != nil || a.IsGlobalUnicast()):
			v.SteerV6 = a.As16()
			v.HasV6 = 1
		}
	}
	if v.HasV4 == 0 && v.HasV6 == 0 {
		return v, fmt.Errorf("%w: %q", ErrNoAddr, ifc.Name)
	}
	return v, nil
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// Heartbeat tells the XDP program that the userspace loop is alive. Call it
// from the loop itself (e.g. gnet's OnTick), every ~100 ms. It allocates
// nothing.
func (s *Steering) Heartbeat() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &s.ts); err != nil {
		return fmt.Errorf("bpf: clock: %w", err)
	}
	s.hbVal = uint64(s.ts.Nano()) // same clock as bpf_ktime_get_ns
	if err := s.objs.Heartbeat.Update(&s.hbKey, &s.hbVal, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bpf: heartbeat: %w", err)
	}
	return nil
}

// SetEnabled switches steering on or off (off: INVITEs are forwarded
// unsigned like any other packet). Use it to shed load when the signing
// queue is over its limit.
func (s *Steering) SetEnabled(on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.cfg.Enabled = 0
	if on {
		s.cfg.Enabled = 1
	}
	if err := s.objs.ConfigMap.Put(uint32(0), &s.cfg); err != nil {
		return fmt.Errorf("bpf: config map: %w", err)
	}
	return nil
}

// Cookie is the per-Attach random value carried in every metadata block.
func (s *Steering) Cookie() uint64 { return s.cfg.Cookie }

// DecodeMeta is the package-level DecodeMeta plus a check that the
// metadata carries this Steering's cookie (so a datagram forged by a local
// process cannot choose where the stamped INVITE goes). Zero allocations.
func (s *Steering) DecodeMeta(pkt []byte) (payload []byte, orig Flow, ok bool) {
	payload, orig, ok = DecodeMeta(pkt)
	if !ok || binary.NativeEndian.Uint64(pkt[mCookie:]) != s.cfg.Cookie {
		return pkt, Flow{}, false
	}
	return payload, orig, true
}

// Modes returns the attach mode ("native" or "generic") per interface.
func (s *Steering) Modes() map[string]string {
	m := make(map[string]string, len(s.ifaces))
	for _, a := range s.ifaces {
		m[a.name] = a.mode
	}
	return m
}

// Close detaches the program from every interface and frees the maps.
// Traffic keeps flowing through the kernel's forwarding. Exiting the
// process has the same effect (XDP links die with their file descriptors).
func (s *Steering) Close() error {
	s.stopRedirectWatch() // before mu: the watcher takes it
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if s.nd != nil {
		s.nd.Close()
	}
	for _, a := range s.ifaces {
		if a.link != nil {
			if err := a.link.Close(); err != nil {
				errs = append(errs, fmt.Errorf("bpf: detach %s: %w", a.name, err))
			}
		}
	}
	if err := s.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("bpf: close objects: %w", err))
	}
	return errors.Join(errs...)
}

// Reason is why a packet took the path it took; counters are kept per
// interface and reason.
type Reason uint32

// Reasons, mirrored from enum reason in steer.c through bpf2go.
const (
	ReasonSteered         = Reason(steerReasonR_STEERED)
	ReasonForwarded       = Reason(steerReasonR_FORWARDED)
	ReasonForwardedCsum   = Reason(steerReasonR_FORWARDED_CSUM)
	ReasonPassNotIP       = Reason(steerReasonR_PASS_NOT_IP)
	ReasonPassL2          = Reason(steerReasonR_PASS_L2)
	ReasonPassVLAN        = Reason(steerReasonR_PASS_VLAN)
	ReasonPassMalformed   = Reason(steerReasonR_PASS_MALFORMED)
	ReasonPassTTL         = Reason(steerReasonR_PASS_TTL)
	ReasonPassLocal       = Reason(steerReasonR_PASS_LOCAL)
	ReasonPassNoNeigh     = Reason(steerReasonR_PASS_NO_NEIGH)
	ReasonPassFragNeeded  = Reason(steerReasonR_PASS_FRAG_NEEDED)
	ReasonPassFIBOther    = Reason(steerReasonR_PASS_FIB_OTHER)
	ReasonPassEgress      = Reason(steerReasonR_PASS_EGRESS)
	ReasonUnsafeEgress    = Reason(steerReasonR_PASS_UNSAFE_EGRESS)
	ReasonUnsafeChecksum  = Reason(steerReasonR_PASS_UNSAFE_CSUM)
	ReasonDropSteerDirect = Reason(steerReasonR_DROP_STEER_DIRECT)
	ReasonDropSteerError  = Reason(steerReasonR_DROP_STEER_ERROR)
	ReasonInviteStale     = Reason(steerReasonR_EV_INVITE_STALE)
	ReasonInviteDisabled  = Reason(steerReasonR_EV_INVITE_DISABLED)
	ReasonInviteError     = Reason(steerReasonR_EV_INVITE_ERROR)
	ReasonInviteFragment  = Reason(steerReasonR_EV_INVITE_FRAGMENT)
	ReasonSIPOverTCP      = Reason(steerReasonR_EV_SIP_TCP)
	NumReasons            = int(steerReasonR_NR)
)

var reasonInfo = [NumReasons]struct{ action, name string }{
	ReasonSteered:         {"steered", "invite"},
	ReasonForwarded:       {"forwarded", "fib"},
	ReasonForwardedCsum:   {"forwarded", "fib_checksum_completed"},
	ReasonPassNotIP:       {"passed", "not_ip"},
	ReasonPassL2:          {"passed", "other_l2_dest"},
	ReasonPassVLAN:        {"passed", "vlan"},
	ReasonPassMalformed:   {"passed", "malformed"},
	ReasonPassTTL:         {"passed", "ttl"},
	ReasonPassLocal:       {"passed", "not_forwarded"},
	ReasonPassNoNeigh:     {"passed", "no_neigh"},
	ReasonPassFragNeeded:  {"passed", "frag_needed"},
	ReasonPassFIBOther:    {"passed", "fib_other"},
	ReasonPassEgress:      {"passed", "egress_unmanaged"},
	ReasonUnsafeEgress:    {"passed", "redirect_unsafe_egress"},
	ReasonUnsafeChecksum:  {"passed", "redirect_unsafe_checksum"},
	ReasonDropSteerDirect: {"dropped", "steer_port_direct"},
	ReasonDropSteerError:  {"dropped", "steer_error"},
	ReasonInviteStale:     {"invite_unsteered", "heartbeat_stale"},
	ReasonInviteDisabled:  {"invite_unsteered", "disabled"},
	ReasonInviteError:     {"invite_unsteered", "steer_error"},
	ReasonInviteFragment:  {"invite_unsteered", "fragment"},
	ReasonSIPOverTCP:      {"sip_tcp", "passed_unsigned"},
}

// Action is "steered", "forwarded", "passed", "dropped" (each packet is
// counted in exactly one of these), or "invite_unsteered" or "sip_tcp" (an
// extra event on top of the packet's action: a SIP over TCP segment, to or
// from a SIP port, passed on unsigned).
func (r Reason) Action() string {
	if int(r) < NumReasons {
		return reasonInfo[r].action
	}
	return "unknown"
}

func (r Reason) String() string {
	if int(r) < NumReasons {
		return reasonInfo[r].name
	}
	return fmt.Sprintf("reason(%d)", uint32(r))
}

// IfaceCounters are one interface's counters, summed over CPUs.
type IfaceCounters struct {
	Ifindex  int
	Mode     string
	ByReason [NumReasons]uint64
}

func (c IfaceCounters) sum(action string) uint64 {
	var n uint64
	for r, v := range c.ByReason {
		if reasonInfo[r].action == action {
			n += v
		}
	}
	return n
}

// Steered counts INVITEs handed to userspace.
func (c IfaceCounters) Steered() uint64 { return c.sum("steered") }

// Forwarded counts packets redirected at XDP level.
func (c IfaceCounters) Forwarded() uint64 { return c.sum("forwarded") }

// Passed counts packets handed to the kernel unmodified.
func (c IfaceCounters) Passed() uint64 { return c.sum("passed") }

// RedirectUnsafe counts the packets XDP would have forwarded but handed to
// the kernel because redirecting them was not safe (the egress does not
// take redirected frames, or the L4 checksum could not be proven complete).
func (c IfaceCounters) RedirectUnsafe() uint64 {
	return c.ByReason[ReasonUnsafeEgress] + c.ByReason[ReasonUnsafeChecksum]
}

// Dropped counts packets dropped by the program.
func (c IfaceCounters) Dropped() uint64 { return c.sum("dropped") }

// Counters reads the per-interface counters (keyed by interface name).
func (s *Steering) Counters() (map[string]IfaceCounters, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	out := make(map[string]IfaceCounters, len(s.ifaces))
	var percpu []uint64
	for _, a := range s.ifaces {
		c := IfaceCounters{Ifindex: a.ifindex, Mode: a.mode}
		for r := 0; r < NumReasons; r++ {
			key := uint32(int(a.slot)*NumReasons + r)
			if err := s.objs.Counters.Lookup(key, &percpu); err != nil {
				return nil, fmt.Errorf("bpf: counters: %w", err)
			}
			for _, v := range percpu {
				c.ByReason[r] += v
			}
		}
		out[a.name] = c
	}
	return out, nil
}

// WritePrometheus writes the counters in Prometheus text format:
//
//	shakenline_xdp_packets_total{iface="eth0",action="forwarded",reason="fib"} 42
//	shakenline_xdp_packets_total{iface="eth0",action="passed",reason="redirect_unsafe_egress"} 7
//	shakenline_xdp_invite_unsteered_total{iface="eth0",reason="heartbeat_stale"} 1
//	shakenline_xdp_sip_tcp_packets_total{iface="eth0"} 7
//	shakenline_xdp_redirect_target{iface="eth1"} 1
//
// Register it with metrics.RegisterMetricsWriter(s.WritePrometheus).
func (s *Steering) WritePrometheus(w io.Writer) {
	cs, err := s.Counters()
	if err != nil {
		return
	}
	targets := s.RedirectTargets()
	for _, a := range s.ifaces {
		c := cs[a.name]
		v := 0.0
		if targets[a.name] {
			v = 1
		}
		metrics.WriteGaugeFloat64(w, fmt.Sprintf("shakenline_xdp_redirect_target{iface=%q}", a.name), v)
		for r := 0; r < NumReasons; r++ {
			ri := reasonInfo[r]
			if ri.action == "sip_tcp" {
				metrics.WriteCounterUint64(w, fmt.Sprintf("shakenline_xdp_sip_tcp_packets_total{iface=%q}", a.name), c.ByReason[r])
				continue
			}
			if ri.action == "invite_unsteered" {
				metrics.WriteCounterUint64(w, fmt.Sprintf("shakenline_xdp_invite_unsteered_total{iface=%q,reason=%q}", a.name, ri.name), c.ByReason[r])
				continue
			}
			metrics.WriteCounterUint64(w, fmt.Sprintf("shakenline_xdp_packets_total{iface=%q,action=%q,reason=%q}", a.name, ri.action, ri.name), c.ByReason[r])
		}
	}
}
