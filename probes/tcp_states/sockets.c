// -- the sockets map ----------------------------------------------------------------------

// What synfin knows about one live socket (a full socket, or the timewait socket that
// replaced one), keyed by its address.
struct sock_entry {
    u64 start_ns;
    u64 state_ns;      // when it entered `state`
    u64 cgroup_id;
    u32 owner_pid;
    u32 netns;
    u32 facts;
    u16 family;
    u16 sport;
    u16 dport;
    u16 reset_reason;
    u8 state;
    u8 syn_retrans;
    u8 reset_state;
    u8 is_timewait;
    u8 closed_from;    // the state it left for CLOSE: where a reset sent after that belongs
    u32 data_segs_in;  // segments with data received, when this side closed (FIN-WAIT-*)
    u8 saddr[16];
    u8 daddr[16];
    char comm[16];
};

// synfin's own health (STAT_* in synfin_events.h), bumped by every part of the probe.
BPF_PERCPU_ARRAY(stats, u64, STAT_COUNT);
// Entries in `sockets` right now (inserted minus removed), to notice LRU evictions.
BPF_ARRAY(sockets_live, s64, 1);
BPF_TABLE("lru_hash", u64, struct sock_entry, sockets, MAX_SOCKETS);

static __always_inline void count_stat(u32 index)
{
    u64 *value = stats.lookup(&index);
    if (value)
        *value += 1;
}

static __always_inline u32 state_slot(int state)
{
    return (state > 0 && state < N_STATE_SLOTS) ? (u32)state : 0;
}

static __always_inline void note_insert(void)
{
    u32 zero = 0;
    s64 *live = sockets_live.lookup(&zero);
    count_stat(STAT_SOCKETS_TRACKED);
    if (!live)
        return;
    if (*live >= MAX_SOCKETS)
        count_stat(STAT_SOCKETS_EVICTED);  // one in, one out: live stays the same
    else
        __sync_fetch_and_add(live, 1);
}

static __always_inline void forget_socket(u64 skaddr)
{
    u32 zero = 0;
    if (sockets.delete(&skaddr) == 0) {
        s64 *live = sockets_live.lookup(&zero);
        if (live)
            __sync_fetch_and_add(live, -1);
    }
}

// -- socket fields at BTF offsets ---------------------------------------------------------

#if READ_NETNS
// The inode number of a struct net: what `ls -l /proc/PID/ns/net` and /run/netns show.
static __always_inline u32 net_inum(void *net)
{
    u32 inum = 0;
    if (net)
        bpf_probe_read_kernel(&inum, sizeof(inum), (char *)net + NET_INUM_OFF);
    return inum;
}
#endif

static __always_inline u32 socket_netns(u64 skaddr)
{
#if READ_NETNS
    void *net = 0;
    bpf_probe_read_kernel(&net, sizeof(net), (void *)(skaddr + SKC_NET_OFF));
    return net_inum(net);
#else
    return 0;
#endif
}

// sk_shutdown is a plain u8 since 6.4 and a 2-bit field before: offset, shift and width from BTF.
static __always_inline u32 socket_shutdown(u64 skaddr)
{
#if READ_SOCK_FIELDS
    u8 byte = 0;
    bpf_probe_read_kernel(&byte, sizeof(byte), (void *)(skaddr + SK_SHUTDOWN_OFF));
    return (byte >> SK_SHUTDOWN_SHIFT) & ((1u << SK_SHUTDOWN_BITS) - 1);
#else
    return 0;
#endif
}

// The error a socket closes with: ECONNREFUSED, ECONNRESET, ETIMEDOUT, or 0 for a close().
static __always_inline int socket_error(u64 skaddr)
{
    int error = 0;
#if READ_SOCK_FIELDS
    bpf_probe_read_kernel(&error, sizeof(error), (void *)(skaddr + SK_ERR_OFF));
#endif
    return error;
}

// Segments sent: 0 in SYN-SENT means connect() was deferred (TCP_FASTOPEN_CONNECT) and no
// SYN left, so the kernel counts no ActiveOpen. -1 when unknown.
static __always_inline s64 socket_segments_out(u64 skaddr)
{
#if READ_SOCK_FIELDS
    u32 segments = 0;
    bpf_probe_read_kernel(&segments, sizeof(segments), (void *)(skaddr + TCP_SEGS_OUT_OFF));
    return segments;
#else
    return -1;
#endif
}

// Segments with data received so far (tcp_sock.data_segs_in), counted before each is
// processed; -1 when unknown.
static __always_inline s64 socket_data_segments_in(u64 skaddr)
{
#if READ_SOCK_FIELDS
    u32 segments = 0;
    bpf_probe_read_kernel(&segments, sizeof(segments), (void *)(skaddr + TCP_DATA_SEGS_IN_OFF));
    return segments;
#else
    return -1;
#endif
}

// A Fast Open child, created by the SYN itself. The kernel marks it only after the state
// change that creates it, so this is read at the child's next one (Linux >= 6.15).
static __always_inline int socket_is_fast_open_child(u64 skaddr)
{
#if READ_SOCK_FIELDS && defined(TFO_CHILD_OFF)
    u8 byte = 0;
    bpf_probe_read_kernel(&byte, sizeof(byte), (void *)(skaddr + TFO_CHILD_OFF));
    return (byte >> TFO_CHILD_SHIFT) & 1;
#else
    return 0;
#endif
}
