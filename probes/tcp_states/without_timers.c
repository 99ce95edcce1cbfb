// -- the lean tier: timewait and handshake facts without the generic timer hooks -----------
//
// timer:timer_start and timer:timer_cancel fire for every timer in the kernel; hooking them
// cost a busy host about a tenth of its connection rate. The lean tier learns the same
// facts from the sockets themselves (offsets from the running kernel's BTF):
//   hand-over  tcp_time_wait() hashes the new timewait socket at the head of the full
//              socket's ehash bucket, then tcp_done() moves the full socket to CLOSE, so at
//              FIN_WAIT2|CLOSING -> CLOSE a timewait socket for the same connection at that
//              bucket's head means a hand-over; none means a real close.
//   2MSL       timer:timer_expire_entry, which returns at once unless the timer's function
//              is tw_timer_handler (expiries are far rarer than timer starts).
//   kills      not observed: collector/exporter/timewait_census.py infers them from the
//              ground truth's census of timewait sockets (hand-overs - expiries - alive).
//   SYN time   tcp_check_req() measures the SYN-ACK's round trip into the child (srtt_us)
//              before the child's SYN_RECV -> ESTABLISHED: the SYN-RCVD time, to within
//              microseconds. After SYN-ACK retransmissions the kernel takes it from the
//              timestamp option, so it still runs from the first SYN-ACK (measured: 3.03 s
//              after two retransmissions); without timestamps there is no sample (srtt 0)
//              and the handshake is not timed.

#if TIMEWAIT_FROM_BUCKET

// Entries ahead of the new timewait socket in its bucket: only sockets hashed on another CPU
// in the few instructions between tcp_time_wait() and tcp_done(). The bucket is read without
// its lock (as RCU readers do): the walk is bounded.
#define BUCKET_WALK 4
#define EHASH_BUCKET_SIZE 8  // struct inet_ehash_bucket: one hlist_nulls_head

struct timewait_entry {
    u64 entered_ns;
    u16 family;
    u8 substate;  // where it started: TCP_FIN_WAIT2 or TCP_TIME_WAIT
    u8 reserved[5];
};

// Timewait sockets handed over and not yet expired. Killed ones are never removed here: they
// age out of the LRU map (a kill is not observed, see above).
BPF_TABLE("lru_hash", u64, struct timewait_entry, timewaits, MAX_SOCKETS);

// A value of `type` read from kernel memory at `address` (0 if it cannot be read).
#define read_kernel(type, address)                                          \
    ({                                                                      \
        type _value = 0;                                                    \
        bpf_probe_read_kernel(&_value, sizeof(_value), (void *)(address)); \
        _value;                                                             \
    })

// The timewait socket that took over `skaddr`'s connection, found at the head of its ehash
// bucket (net->ipv4.tcp_death_row.hashinfo: per namespace since 6.1).
static __always_inline int find_timewait_successor(u64 skaddr, u64 now,
                                                   struct pending_timewait *out)
{
    u64 net = read_kernel(u64, skaddr + SKC_NET_OFF);
    u64 hashinfo = net ? read_kernel(u64, net + NET_TW_HASHINFO_OFF) : 0;
    if (!hashinfo)
        return 0;
    u64 ehash = read_kernel(u64, hashinfo + HASHINFO_EHASH_OFF);
    u32 mask = read_kernel(u32, hashinfo + HASHINFO_EHASH_MASK_OFF);
    u32 hash = read_kernel(u32, skaddr + SKC_HASH_OFF);
    u64 cookie = read_kernel(u64, skaddr + SKC_COOKIE_OFF);
    u16 sport = read_kernel(u16, skaddr + INET_SPORT_OFF);  // network order, as tw_sport
    u16 dport = read_kernel(u16, skaddr + SKC_DPORT_OFF);
    u64 node = read_kernel(u64, ehash + (u64)(hash & mask) * EHASH_BUCKET_SIZE);
#pragma unroll
    for (int i = 0; i < BUCKET_WALK; i++) {
        if (!node || (node & 1))  // an odd pointer is the chain's nulls marker: its end
            return 0;
        u64 tw = node - SKC_NULLS_NODE_OFF;
        if (read_kernel(u8, tw + SKC_STATE_OFF) == TCP_TIME_WAIT_NUM &&
            read_kernel(u32, tw + SKC_HASH_OFF) == hash && read_kernel(u64, tw + SKC_COOKIE_OFF) == cookie &&
            read_kernel(u16, tw + TW_SPORT_OFF) == sport && read_kernel(u16, tw + SKC_DPORT_OFF) == dport &&
            read_kernel(u64, tw + SKC_NET_OFF) == net) {
            out->tw = tw;
            out->ts_ns = now;
            out->substate = read_kernel(u8, tw + TW_SUBSTATE_OFF);
            return 1;
        }
        node = read_kernel(u64, node);  // hlist_nulls_node.next
    }
    return 0;
}

// Counted like the full tier's hand-over; the timewait socket's place in
// synfin_tcp_connections comes from the census (its kills are not seen here).
static __always_inline void hand_over_to_timewait(struct sock_entry *entry, int oldstate,
                                                  struct pending_timewait *timewait, u64 now)
{
    entry->facts |= FACT_TIMEWAIT;
    struct timewait_entry tw = {.entered_ns = now, .family = entry->family,
                                .substate = timewait->substate};
    timewaits.update(&timewait->tw, &tw);
    count_hand_over(oldstate, timewait->substate, entry->family);
}

static __always_inline void note_child(u64 skaddr) {}

static __always_inline void syn_time_from_handshake_rtt(u64 skaddr, struct sock_entry *entry,
                                                        u64 now)
{
    if (!(entry->facts & FACT_PASSIVE_OPEN) || (entry->facts & FACT_SYN_OBSERVED))
        return;
    u32 retransmits = read_kernel(u32, skaddr + TCP_TOTAL_RETRANS_OFF);
    if (retransmits) {
        entry->facts |= FACT_SYN_RETRANSMITTED;
        entry->syn_retrans = retransmits < 255 ? retransmits : 255;
    }
    u64 took_ns = (u64)(read_kernel(u32, skaddr + TCP_SRTT_OFF) >> 3) * 1000;  // srtt_us is 8x
    if (!took_ns || took_ns > now)
        return;
    entry->start_ns = now - took_ns;
    entry->state_ns = now - took_ns;  // the textbook's SYN-RCVD began at the SYN
    entry->facts |= FACT_SYN_OBSERVED;
}

// 2MSL ran out (or FIN-WAIT-2's timeout, in a timewait socket that never got the FIN).
static __always_inline void timewait_expired(u64 tw)
{
    struct timewait_entry *entry = timewaits.lookup(&tw);
    if (!entry) {
        // Handed over before synfin started (or aged out of the map): the census that infers
        // kills counts it alive until now.
        count_stat(STAT_TIMEWAIT_UNTRACKED);
        count_timewait(TW_END_UNTRACKED, read_kernel(u16, tw + SKC_FAMILY_OFF));
        return;
    }
    u64 now = bpf_ktime_get_ns();
    u8 substate = read_kernel(u8, tw + TW_SUBSTATE_OFF);
    if (substate == TCP_TIME_WAIT_NUM) {
        count_timewait(TW_END_EXPIRED, entry->family);
        if (entry->substate != TCP_TIME_WAIT_NUM)
            count_timewait(TW_END_UNSEEN_ENTRY, entry->family);  // the peer's FIN came later
        else
            observe_state(substate, entry->entered_ns, now);
    } else {
        count_timewait(TW_END_FIN_WAIT2_EXPIRED, entry->family);
        observe_state(substate, entry->entered_ns, now);
    }
    timewaits.delete(&tw);
}

RAW_TRACEPOINT_PROBE(timer_expire_entry)
{
    u64 timer = ctx->args[0];
    u64 function = 0;
    bpf_probe_read_kernel(&function, sizeof(function), (void *)(timer + TIMER_FUNCTION_OFF));
    if (function == TW_TIMER_FN)
        timewait_expired(timer - TW_TIMER_OFF);
    return 0;
}
#endif
