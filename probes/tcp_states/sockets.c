// -- the sockets map ----------------------------------------------------------------------

// What synfin knows about one live socket (a full socket, or in the timers tier the timewait
// socket that replaced one).
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
#if STREAM_EVENTS
    u8 saddr[16];      // only the stream shows addresses and owners
    u8 daddr[16];
    char comm[16];
#endif
#if PER_CONNECTION
    u64 timewait;      // the timewait socket that took over, once it has
    u64 full_socket;   // in a timewait socket's entry: the full socket it took over from
    u8 path_len;
    struct path_step path[PATH_STEPS];  // the steps not yet sent (stream.c)
#endif
};

// Resets sent for no socket synfin follows are shown in the per-event stream only: a
// per-connection record needs a socket.
#define SOCKETLESS_RESETS (RESET_SOCKADDR && STREAM_EVENTS && !PER_CONNECTION)

#if PER_CONNECTION
// A new entry is built here: with its path it is too big for the 512-byte BPF stack. One per
// context level, as step_scratch (stream.c).
BPF_PERCPU_ARRAY(entry_scratch, struct sock_entry, 2);
#endif

// synfin's own health (STAT_* in synfin_events.h), bumped by every part of the probe.
BPF_PERCPU_ARRAY(stats, u64, STAT_COUNT);
// Entries right now (created minus removed): how full the table is.
BPF_ARRAY(sockets_live, s64, 1);
#if LEAN_TIER
// The lean tier's table: a slot per socket, found from the socket's cookie (unique for the
// kernel's lifetime, never reused like an address). Cookies are handed out in per-CPU runs,
// so consecutive sockets take consecutive slots; a socket looks at SLOT_PROBES slots from
// cookie % SOCKET_SLOTS. No lock, no allocation: sk_storage allocated per socket cost about
// 4 points of a busy host's throughput more (docs/benchmarks.md). A socket that finds no free
// slot is not followed (counted as STAT_SOCKETS_EVICTED); SOCKET_SLOTS is twice --max-sockets.
#define SLOT_PROBES 4

struct socket_slot {
    u64 cookie;  // 0: free
    struct sock_entry entry;
};

BPF_ARRAY(socket_slots, struct socket_slot, SOCKET_SLOTS);

// A child socket's cookie is not yet its own when the kernel announces it (LISTEN ->
// SYN_RECV): inet_csk_clone_lock() sets it from the request socket only after the state
// change (seen on 6.1 and 6.12), so a cookie asked for then is thrown away. Until its next
// state change, a child's entry waits here under its address (adopt_newborn).
BPF_TABLE("lru_hash", u64, struct sock_entry, newborns, MAX_HALF_OPEN);
#define SOCKET_STATE_NOW(sk) (*(u8 *)((char *)(sk) + SKC_STATE_OFF))

static __always_inline struct socket_slot *slot_at(u64 cookie, u32 probe)
{
    u32 index = ((u32)cookie + probe) & (SOCKET_SLOTS - 1);
    return socket_slots.lookup(&index);
}
#else
BPF_TABLE("lru_hash", u64, struct sock_entry, sockets, MAX_SOCKETS);
#endif

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
#if !LEAN_TIER
    if (*live >= MAX_SOCKETS) {
        count_stat(STAT_SOCKETS_EVICTED);  // one in, one out: live stays the same
        return;
    }
#endif
    __sync_fetch_and_add(live, 1);
}

static __always_inline void note_removal(void)
{
    u32 zero = 0;
    s64 *live = sockets_live.lookup(&zero);
    if (live)
        __sync_fetch_and_add(live, -1);
}

// A full socket's entry. In the lean tier `sk` must be the BTF-typed pointer a tp_btf program
// received: the socket's cookie is read through it.
static __always_inline struct sock_entry *find_entry(struct sock *sk)
{
#if LEAN_TIER
    u64 cookie = bpf_get_socket_cookie(sk);
#pragma unroll
    for (u32 probe = 0; probe < SLOT_PROBES; probe++) {
        struct socket_slot *slot = slot_at(cookie, probe);
        if (slot && slot->cookie == cookie)
            return &slot->entry;
    }
    if (SOCKET_STATE_NOW(sk) != TCP_SYN_RECV_NUM)
        return 0;
    u64 skaddr = (u64)sk;
    return newborns.lookup(&skaddr);  // a child not yet adopted
#else
    u64 skaddr = (u64)sk;
    return sockets.lookup(&skaddr);
#endif
}

static __always_inline struct sock_entry *create_entry(struct sock *sk, struct sock_entry *fresh)
{
#if LEAN_TIER
    u64 cookie = bpf_get_socket_cookie(sk);
#pragma unroll
    for (u32 probe = 0; probe < SLOT_PROBES; probe++) {
        struct socket_slot *slot = slot_at(cookie, probe);
        // Another CPU may claim the same free slot for another socket: the swap decides.
        if (slot && slot->cookie == 0 && __sync_val_compare_and_swap(&slot->cookie, 0, cookie) == 0) {
            __builtin_memcpy(&slot->entry, fresh, sizeof(*fresh));
            note_insert();
            return &slot->entry;
        }
    }
    count_stat(STAT_SOCKETS_EVICTED);  // no free slot near this cookie: not followed
    return 0;
#else
    u64 skaddr = (u64)sk;
    sockets.update(&skaddr, fresh);
    note_insert();
    return sockets.lookup(&skaddr);
#endif
}

#if LEAN_TIER
// A child announced by LISTEN -> SYN_RECV: its entry, kept under its address for now.
static __always_inline struct sock_entry *create_newborn(struct sock *sk, struct sock_entry *fresh)
{
    u64 skaddr = (u64)sk;
    newborns.update(&skaddr, fresh);
    return newborns.lookup(&skaddr);
}

// The child's first state change since its birth: its cookie is final, its entry moves to
// the table. `found` is what find_entry() gave: the newborn's entry, or the table's.
static __always_inline struct sock_entry *adopt_newborn(struct sock *sk, struct sock_entry *found)
{
    u64 skaddr = (u64)sk;
    struct sock_entry *newborn = newborns.lookup(&skaddr);
    if (!newborn || newborn != found)
        return found;
    struct sock_entry *entry = create_entry(sk, newborn);
    newborns.delete(&skaddr);
    return entry;
}
#endif

static __always_inline void forget_entry(struct sock *sk)
{
#if LEAN_TIER
    u64 cookie = bpf_get_socket_cookie(sk);
#pragma unroll
    for (u32 probe = 0; probe < SLOT_PROBES; probe++) {
        struct socket_slot *slot = slot_at(cookie, probe);
        if (slot && slot->cookie == cookie) {
            slot->cookie = 0;
            note_removal();
            return;
        }
    }
#else
    u64 skaddr = (u64)sk;
    if (sockets.delete(&skaddr) == 0)
        note_removal();
#endif
}

#if !LEAN_TIER
// A timewait socket's entry (full tier: keyed by its address in the same map).
static __always_inline void forget_timewait(u64 tw)
{
    if (sockets.delete(&tw) == 0)
        note_removal();
}
#endif

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

#if defined(SKC_HASH_OFF) && defined(SKC_DPORT_OFF) && defined(SKC_NET_OFF)
// Whether two sockets stand for one connection: a timewait socket and the full socket it
// replaces, or a child and its request socket. The kernel hashes both from the same addresses
// and ports, and copies the remote port and the namespace. (Not the local port: the full
// socket has released it, skc_num 0, by the time it announces CLOSE.)
static __always_inline int same_connection(u64 one, u64 other)
{
    u32 hash_one = 0, hash_other = 0;
    u16 dport_one = 0, dport_other = 0;
    u64 net_one = 0, net_other = 0;
    bpf_probe_read_kernel(&hash_one, sizeof(hash_one), (void *)(one + SKC_HASH_OFF));
    bpf_probe_read_kernel(&hash_other, sizeof(hash_other), (void *)(other + SKC_HASH_OFF));
    bpf_probe_read_kernel(&dport_one, sizeof(dport_one), (void *)(one + SKC_DPORT_OFF));
    bpf_probe_read_kernel(&dport_other, sizeof(dport_other), (void *)(other + SKC_DPORT_OFF));
    bpf_probe_read_kernel(&net_one, sizeof(net_one), (void *)(one + SKC_NET_OFF));
    bpf_probe_read_kernel(&net_other, sizeof(net_other), (void *)(other + SKC_NET_OFF));
    return hash_one == hash_other && dport_one == dport_other && net_one == net_other;
}
#endif

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

#if LEAN_TIER
// -- the lean tier's socket fields (tp_btf programs; offsets from BTF) ----------------------
//
// A tp_btf program gets the socket, not the tracepoint's record: what the record would hold
// (family, ports) is read here. Fields inside struct sock are loaded directly from the
// BTF-typed pointer (the verifier checks them against the kernel's own layout); fields of the
// larger inet_sock and tcp_sock lie past struct sock, beyond what the verifier lets a direct
// load reach, so they go through bpf_probe_read_kernel.
#define SOCK_FIELD(type, sk, offset) (*(type *)((char *)(sk) + (offset)))

static __always_inline u16 socket_family(struct sock *sk)
{
    return SOCK_FIELD(u16, sk, SKC_FAMILY_OFF);
}

static __always_inline u16 socket_protocol(struct sock *sk)
{
    return SOCK_FIELD(u16, sk, SK_PROTOCOL_OFF);
}

static __always_inline u8 socket_state(struct sock *sk)
{
    return SOCK_FIELD(u8, sk, SKC_STATE_OFF);
}

static __always_inline u16 socket_dport(struct sock *sk)
{
    return bpf_ntohs(SOCK_FIELD(u16, sk, SKC_DPORT_OFF));
}

// inet_sport, not skc_num: at the hand-over to a timewait socket the port is already released
// (inet_num is 0) but inet_sport still holds it.
static __always_inline u16 socket_sport(u64 skaddr)
{
    u16 port = 0;
    bpf_probe_read_kernel(&port, sizeof(port), (void *)(skaddr + INET_SPORT_OFF));
    return bpf_ntohs(port);
}

// 1 while a process holds the socket (connect, close, shutdown, listen, and the backlog
// processed in release_sock); 0 in softirq, where segments and timers drive the socket.
static __always_inline int socket_owned_by_process(struct sock *sk)
{
    return SOCK_FIELD(int, sk, SK_LOCK_OWNED_OFF) != 0;
}

#endif
