// -- resets and retransmits ---------------------------------------------------------------
//
// Resets and SYN retransmissions, folded into the socket's facts and streamed. Layout
// switches, set by collector/kernel/features.py from the tracepoints' formats:
//   RESET_HAS_STATE      tcp_send_reset has `state` (5.0+)
//   RESET_HAS_REASON     tcp_send_reset has `reason` (6.10+)
//   RESET_SOCKADDR       tcp_send_reset has sockaddr-form saddr/daddr and fires without a
//                        socket (6.10+); READ_SKB_NETNS then gives such a reset's namespace
//   RETRANSMIT_HAS_STATE tcp_retransmit_skb has `state` (5.0+)
//   RETRANSMIT_HAS_ERR   tcp_retransmit_skb has `err` and fires for failed attempts too (6.18+)
//   RETRANSMIT_SEGMENTS  SKB_CB_OFF, TCB_GSO_SEGS_OFF give a retransmitted skb's segments

#if OBSERVE_RESETS

// errno values of asm-generic, shared by every architecture synfin loads on (x86_64, arm64,
// riscv64, ppc64le, s390x): ABI, the same in every kernel version.
#define EINVAL_NUM 22
#define EAGAIN_NUM 11
#define ENOMEM_NUM 12
#define EBUSY_NUM 16
#define EHOSTUNREACH_NUM 113

#if RESET_SOCKADDR
// A sockaddr_in or sockaddr_in6 (as the tracepoint stores it) into the event's address form.
static __always_inline u16 from_sockaddr(const u8 *sockaddr, u8 *address)
{
    u16 family = 0;
    __builtin_memcpy(&family, sockaddr, sizeof(family));
    if (family == AF_INET_NUM) {
        address[10] = 0xff;
        address[11] = 0xff;
        __builtin_memcpy(address + 12, sockaddr + 4, 4);
    } else {
        __builtin_memcpy(address, sockaddr + 8, 16);
    }
    return family;
}

static __always_inline u16 sockaddr_port(const u8 *sockaddr)
{
    return ((u16)sockaddr[2] << 8) | sockaddr[3];
}

static __always_inline u32 skb_netns(u64 skbaddr)
{
#if READ_SKB_NETNS
    void *dev = 0, *net = 0;
    bpf_probe_read_kernel(&dev, sizeof(dev), (void *)(skbaddr + SKB_DEV_OFF));
    if (dev)
        bpf_probe_read_kernel(&net, sizeof(net), (char *)dev + DEV_NET_OFF);
    return net_inum(net);
#else
    return 0;
#endif
}
#endif

// Data arriving after close() makes the kernel abort: tcp_reset() runs and fires
// tcp_receive_reset as for a real RST, the orphan is closed and destroyed, and only then does
// this host's RST go out. A data segment counted since this side closed tells the abort apart
// (a real RST carries none); its RST is then counted when it is sent, in the state before.
struct aborted_on_data {
    u64 skaddr;
    u8 state;
};
BPF_PERCPU_ARRAY(aborts_on_data, struct aborted_on_data, 1);

static __always_inline int aborts_on_data_now(u64 skaddr, struct sock_entry *entry)
{
    if (!(entry->state == TCP_FIN_WAIT1_NUM || entry->state == TCP_FIN_WAIT2_NUM) ||
        !(socket_shutdown(skaddr) & RCV_SHUTDOWN_BIT))
        return 0;
    s64 now_in = socket_data_segments_in(skaddr);
    if (now_in < 0 || now_in <= entry->data_segs_in)
        return 0;
    u32 zero = 0;
    struct aborted_on_data *slot = aborts_on_data.lookup(&zero);
    if (slot) {
        slot->skaddr = skaddr;
        slot->state = entry->state;
    }
    entry->facts |= FACT_RESET_SENT;
    entry->reset_state = entry->state;
    return 1;
}

// A reset this host sent. `sockaddrs` (6.10+ layout) describe it when there is no socket.
static __always_inline void on_reset_sent(struct sock *sk, u64 skbaddr, u8 state, u16 reason,
                                          const u8 *local, const u8 *remote)
{
    u64 skaddr = (u64)sk;
    struct sock_entry *entry = sk ? find_entry(sk) : 0;
    // An abort (close with unread data, a listener's children) moves the socket to CLOSE
    // before its RST goes out: the reset belongs to the state the connection was in.
    u8 hit = state ? state : (entry ? entry->state : 0);
    if (hit == TCP_CLOSE_NUM && entry && entry->closed_from)
        hit = entry->closed_from;
    u32 zero = 0;
    struct aborted_on_data *aborted = aborts_on_data.lookup(&zero);
    if (aborted && skaddr && aborted->skaddr == skaddr) {
        hit = aborted->state;  // the orphan is gone by now: its state was kept
        aborted->skaddr = 0;
    }
    u32 index = state_slot(hit) * N_RESET_REASONS +
                (reason < N_RESET_REASONS ? reason : N_RESET_REASONS - 1);
    add_to(resets_sent.lookup(&index));
#if SOCKETLESS_RESETS
    struct sock_entry scratch = {};
#endif
    if (entry) {
        entry->facts |= FACT_RESET_SENT;
        if (in_process_context_of(sk))
            entry->facts |= FACT_RESET_SENT_BY_PROCESS;
        entry->reset_state = hit;
        entry->reset_reason = reason;
    } else {
#if SOCKETLESS_RESETS
        // No socket (a segment to a closed port, say), or one synfin never saw.
        scratch.family = from_sockaddr(local, scratch.saddr);
        from_sockaddr(remote, scratch.daddr);
        scratch.sport = sockaddr_port(local);
        scratch.dport = sockaddr_port(remote);
        scratch.netns = skaddr ? socket_netns(skaddr) : skb_netns(skbaddr);
        scratch.reset_state = hit;
        scratch.reset_reason = reason;
        entry = &scratch;
#else
        return;
#endif
    }
    struct synfin_event *event = start_event(EVENT_RESET_SENT, bpf_ktime_get_ns(), skaddr, entry);
    if (event) {
        event->oldstate = event->newstate = entry->reset_state;
        send_event(event);
    }
}

static __always_inline void on_reset_received(struct sock *sk, struct sock_entry *entry, int state)
{
    u64 skaddr = (u64)sk;
    if (entry && aborts_on_data_now(skaddr, entry))
        return;
    u32 index = state_slot(state);
    add_to(resets_received.lookup(&index));
    if (!entry)
        return;
    entry->facts |= FACT_RESET_RECEIVED;
    entry->reset_state = entry->state;
    struct synfin_event *event =
        start_event(EVENT_RESET_RECEIVED, bpf_ktime_get_ns(), skaddr, entry);
    if (event) {
        event->oldstate = event->newstate = entry->state;
        send_event(event);
    }
}

// Linux adds a retransmission to RetransSegs as soon as it reaches tcp_transmit_skb, whatever
// the transmission then returns (a firewall's drop: -EPERM; a full queue): since 6.18 the
// tracepoint reports every attempt with its error, and these are the errors of the checks
// before that point in __tcp_retransmit_skb, the attempts RetransSegs leaves out. (A route
// lost between the check and the transmission also says -EHOSTUNREACH: left out here, counted
// there.)
static __always_inline bool retransmission_counted(int err)
{
    return err != -EBUSY_NUM && err != -EINVAL_NUM && err != -ENOMEM_NUM &&
           err != -EHOSTUNREACH_NUM && err != -EAGAIN_NUM;
}

// RetransSegs counts segments: a retransmitted skb may carry several (tcp_skb_pcount).
static __always_inline u64 retransmitted_segments(u64 skbaddr)
{
#if RETRANSMIT_SEGMENTS
    u16 segments = 0;
    bpf_probe_read_kernel(&segments, sizeof(segments),
                          (void *)(skbaddr + SKB_CB_OFF + TCB_GSO_SEGS_OFF));
    return segments ? segments : 1;
#else
    return 1;
#endif
}

static __always_inline void on_retransmit(struct sock *sk, int state_or_unknown, u64 segments)
{
    struct sock_entry *entry = find_entry(sk);
    int state = state_or_unknown >= 0 ? state_or_unknown : (entry ? entry->state : 0);
    u32 kind = state == TCP_SYN_SENT_NUM ? RETRANSMIT_SYN : RETRANSMIT_DATA;
    u32 index = kind * N_STATE_SLOTS + state_slot(state);
    u64 *counter = retransmits.lookup(&index);
    if (counter)
        *counter += segments;
    if (!entry)
        return;
    if (state == TCP_SYN_SENT_NUM) {
        entry->facts |= FACT_SYN_RETRANSMITTED;
        if (entry->syn_retrans < 255)
            entry->syn_retrans += 1;
    }
}
#endif

// -- the reset and retransmit hooks -------------------------------------------------------

#if OBSERVE_RESETS && !LEAN_TIER
TRACEPOINT_PROBE(tcp, tcp_send_reset)
{
    u8 state = 0;
    u16 reason = 0;
    const u8 *local = 0, *remote = 0;
#if RESET_HAS_STATE
    state = args->state;
#endif
#if RESET_HAS_REASON
    reason = args->reason;
#endif
#if RESET_SOCKADDR
    local = args->saddr;
    remote = args->daddr;
#endif
    on_reset_sent((struct sock *)args->skaddr, (u64)args->skbaddr, state, reason, local, remote);
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_receive_reset)
{
    struct sock *sk = (struct sock *)args->skaddr;
    struct sock_entry *entry = find_entry(sk);
    on_reset_received(sk, entry, entry ? entry->state : 0);
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
#if RETRANSMIT_HAS_ERR
    if (!retransmission_counted(args->err))
        return 0;
#endif
    u64 segments = retransmitted_segments((u64)args->skbaddr);
#if RETRANSMIT_HAS_STATE
    on_retransmit((struct sock *)args->skaddr, args->state, segments);
#else
    on_retransmit((struct sock *)args->skaddr, -1, segments);
#endif
    return 0;
}
#endif
