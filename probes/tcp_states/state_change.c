// -- state changes ------------------------------------------------------------------------

static __always_inline u32 facts_for(int oldstate, int newstate, u64 skaddr, int in_process)
{
    u32 facts = 0;
    if (oldstate == TCP_CLOSE_NUM && newstate == TCP_SYN_SENT_NUM)
        facts |= FACT_ACTIVE_OPEN;
    if (oldstate == TCP_LISTEN_NUM && newstate == TCP_SYN_RECV_NUM)
        facts |= FACT_PASSIVE_OPEN;
    // A Fast Open child was made by the SYN itself, not by the third ACK: its SYN-RCVD began
    // when it was created.
    if (oldstate == TCP_SYN_RECV_NUM && socket_is_fast_open_child(skaddr))
        facts |= FACT_FAST_OPEN | FACT_SYN_OBSERVED;
    if (oldstate == TCP_SYN_SENT_NUM && newstate == TCP_SYN_RECV_NUM)
        facts |= FACT_SIMULTANEOUS_OPEN;
    if (newstate == TCP_ESTABLISHED_NUM)
        facts |= FACT_ESTABLISHED;
    if (newstate == TCP_FIN_WAIT1_NUM) {
        facts |= FACT_LOCAL_FIN_FIRST;
        // close() marks both directions shut before sending FIN; shutdown(SHUT_WR) only one.
        // Both shut is also shutdown(SHUT_WR) after an earlier SHUT_RD: that case shows when
        // close() comes later and announces the state again (same_state_announced).
        if (in_process && socket_shutdown(skaddr) == SEND_SHUTDOWN_BIT)
            facts |= FACT_HALF_CLOSE;
    }
    if (newstate == TCP_CLOSE_WAIT_NUM)
        facts |= FACT_REMOTE_FIN_FIRST;
    if (newstate == TCP_LISTEN_NUM)
        facts |= FACT_LISTENED;
    if (newstate == TCP_CLOSING_NUM)
        facts |= FACT_CLOSING;
    if (newstate == TCP_CLOSE_NUM) {
        facts |= FACT_CLOSED;
        if (in_process)
            facts |= FACT_CLOSED_BY_PROCESS;
        if (socket_error(skaddr) == ETIMEDOUT_NUM)
            facts |= FACT_TIMED_OUT;
        if (oldstate == TCP_SYN_SENT_NUM && socket_segments_out(skaddr) == 0)
            facts |= FACT_NO_SYN_SENT;
    }
    return facts;
}

static __always_inline void handshake_done(int oldstate, struct sock_entry *entry, u64 now)
{
    u32 role;
    // From SYN-SENT, or through SYN-RCVD when the SYNs crossed (simultaneous open).
    if (entry->facts & FACT_ACTIVE_OPEN) {
        role = ROLE_ACTIVE;  // from connect()'s SYN
        count_open(OPEN_CONNECTED, entry);
    } else if (oldstate == TCP_SYN_RECV_NUM && (entry->facts & FACT_SYN_OBSERVED)) {
        role = ROLE_PASSIVE;  // from the SYN's arrival
    } else {
        return;
    }
    if (entry->start_ns && entry->start_ns <= now)
        observe(handshake_seconds.lookup(&role), now - entry->start_ns);
}

// Open to close (not to the end of TIME-WAIT), for connections that got established.
static __always_inline void connection_done(struct sock_entry *entry, u64 now)
{
    if (!(entry->facts & FACT_ESTABLISHED) || !entry->start_ns)
        return;
    u32 role = (entry->facts & FACT_PASSIVE_OPEN) ? ROLE_PASSIVE : ROLE_ACTIVE;
    if (!(entry->facts & (FACT_ACTIVE_OPEN | FACT_PASSIVE_OPEN)))
        return;  // began before synfin: its start is unknown
    u64 end = entry->state == TCP_CLOSE_NUM ? entry->state_ns : now;
    if (end >= entry->start_ns)
        observe(connection_seconds.lookup(&role), end - entry->start_ns);
}

static __always_inline struct sock_entry *entry_for(struct sock *sk, u64 now, int oldstate,
                                                    int newstate)
{
    int newborn = oldstate == TCP_LISTEN_NUM && newstate == TCP_SYN_RECV_NUM;
#if LEAN_TIER
    // A newborn child's cookie is its listener's or about to be replaced: not looked up.
    struct sock_entry *entry = newborn ? 0 : find_entry(sk);
    if (entry && oldstate == TCP_SYN_RECV_NUM)
        entry = adopt_newborn(sk, entry);
#else
    struct sock_entry *entry = find_entry(sk);
#endif
    if (entry)
        return entry;
#if PER_CONNECTION
    u32 level = in_process_context() ? 0 : 1;
    struct sock_entry *fresh = entry_scratch.lookup(&level);
    if (!fresh)
        return 0;
    __builtin_memset(fresh, 0, sizeof(*fresh));
#else
    struct sock_entry blank = {};
    struct sock_entry *fresh = &blank;
#endif
    fresh->start_ns = now;
    fresh->state = oldstate;
    fresh->netns = socket_netns((u64)sk);
    if (!(oldstate == TCP_CLOSE_NUM || newborn))
        fresh->facts |= FACT_PREEXISTING;
#if LEAN_TIER
    if (newborn)
        return create_newborn(sk, fresh);
#endif
    return create_entry(sk, fresh);
}

// close() after shutdown() makes the kernel announce the state the socket is already in. The
// textbook has no such arrow: it is a fact about the socket (the FIN came from shutdown), so
// nothing is counted or timed, and the stream carries it as a note.
static __always_inline int same_state_announced(struct sock *sk, int state, u64 now)
{
    struct sock_entry *entry = find_entry(sk);
    if (!entry)
        return 0;
    entry->facts |= FACT_CLOSED_AFTER_SHUTDOWN;
    if ((entry->facts & FACT_LOCAL_FIN_FIRST) &&
        (state == TCP_FIN_WAIT1_NUM || state == TCP_FIN_WAIT2_NUM || state == TCP_CLOSING_NUM))
        entry->facts |= FACT_HALF_CLOSE;
    struct synfin_event *event = start_event(EVENT_STATE_CHANGE, now, (u64)sk, entry);
    if (!event)
        return 0;
    event->since_ns = entry->state_ns;
    event->oldstate = event->newstate = state;
    send_event(event);
    return 0;
}

// What the tracepoint's record says of the socket (read from the socket by a tp_btf program).
struct state_change {
    int oldstate;
    int newstate;
    u16 family;
    u16 sport;
    u16 dport;
#if STREAM_EVENTS
    u8 saddr_v6[16];  // the stream's addresses (IPv4 as v4-mapped)
    u8 daddr_v6[16];
#endif
};

static __always_inline int on_state_change(struct sock *sk, struct state_change *change)
{
    u64 now = bpf_ktime_get_ns();
    u64 skaddr = (u64)sk;
    int oldstate = change->oldstate, newstate = change->newstate;
    if (oldstate == newstate)
        return same_state_announced(sk, oldstate, now);
    u32 index = (state_slot(oldstate) * N_STATE_SLOTS + state_slot(newstate)) * 2 +
                (change->family == AF_INET6_NUM);
    u64 *count = transitions.lookup(&index);
    if (count)
        *count += 1;

    struct sock_entry *entry = entry_for(sk, now, oldstate, newstate);
    if (!entry)
        return 0;
    int in_process = in_process_context_of(sk);
    if (oldstate == TCP_SYN_RECV_NUM && newstate == TCP_ESTABLISHED_NUM)
        syn_time_from_handshake_rtt(skaddr, entry, now);
    u64 since = entry->state_ns;  // 0 for a socket seen for the first time
    gauge_move(since ? oldstate : -1, newstate, change->family);
    observe_state(oldstate, since, now);
    entry->facts |= facts_for(oldstate, newstate, skaddr, in_process);
    if (newstate == TCP_CLOSE_NUM)
        entry->closed_from = oldstate;
    if (newstate == TCP_FIN_WAIT1_NUM || newstate == TCP_FIN_WAIT2_NUM)
        entry->data_segs_in = socket_data_segments_in(skaddr);
    entry->state = newstate;
    entry->state_ns = now;
    entry->family = change->family;
    entry->sport = change->sport;
    entry->dport = change->dport;
#if STREAM_EVENTS
    // Only the stream shows addresses and owners; the counters need neither.
    // IPv4 sockets fill the v6 fields too (v4-mapped), so one copy serves both families.
    __builtin_memcpy(entry->saddr, change->saddr_v6, sizeof(entry->saddr));
    __builtin_memcpy(entry->daddr, change->daddr_v6, sizeof(entry->daddr));
    if (in_process)
        capture_owner(entry);
    track_listener(oldstate, newstate, entry);
#endif
    if (oldstate == TCP_LISTEN_NUM && newstate == TCP_SYN_RECV_NUM) {
#if STREAM_EVENTS
        inherit_listener_owner(entry);
#endif
        note_child(skaddr);  // a request socket's timer, cancelled now, links its SYN's time
        count_open(OPEN_ACCEPTED, entry);
    }
    if (newstate == TCP_ESTABLISHED_NUM)
        handshake_done(oldstate, entry, now);

    struct pending_timewait timewait = {};
    if (newstate == TCP_CLOSE_NUM &&
        (oldstate == TCP_FIN_WAIT2_NUM || oldstate == TCP_CLOSING_NUM) &&
        find_timewait_successor(skaddr, now, &timewait))
        hand_over_to_timewait(entry, oldstate, &timewait, now);

    struct synfin_event *event = start_event(EVENT_STATE_CHANGE, now, skaddr, entry);
    if (!event)
        return 0;
    event->since_ns = since;
    event->oldstate = oldstate;
    event->newstate = newstate;
    if (timewait.tw) {
        event->aux = timewait.tw;
        event->detail = timewait.substate;
    }
    send_event(event);
    return 0;
}

// The full socket is gone: its facts are final. (A timewait socket may live on.)
static __always_inline int on_socket_destroyed(struct sock *sk)
{
    struct sock_entry *entry = find_entry(sk);
    if (!entry)
        return 0;
    gauge_move(entry->state, -1, entry->family);
    count_ending(entry);
    connection_done(entry, bpf_ktime_get_ns());
    struct synfin_event *event = start_event(EVENT_SOCKET_END, bpf_ktime_get_ns(), (u64)sk, entry);
    if (event) {
        event->oldstate = entry->state;
        event->newstate = entry->state;
        send_event(event);
    }
    forget_entry(sk);
    return 0;
}

#if !LEAN_TIER
TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    // The tracepoint is shared with SCTP and MPTCP.
    if (args->protocol != IPPROTO_TCP_NUM)
        return 0;
    struct state_change change = {
        .oldstate = args->oldstate,
        .newstate = args->newstate,
        .family = args->family,
        .sport = args->sport,
        .dport = args->dport,
    };
#if STREAM_EVENTS
    __builtin_memcpy(change.saddr_v6, args->saddr_v6, sizeof(change.saddr_v6));
    __builtin_memcpy(change.daddr_v6, args->daddr_v6, sizeof(change.daddr_v6));
#endif
    return on_state_change((struct sock *)args->skaddr, &change);
}

TRACEPOINT_PROBE(tcp, tcp_destroy_sock)
{
    return on_socket_destroyed((struct sock *)args->skaddr);
}
#endif
