// -- timewait and request sockets ---------------------------------------------------------
//
// Timewait and request sockets change state without any state tracepoint, but each has a
// kernel timer, and timer:* tracepoints name the timer and its function. Matching the function
// against tw_timer_handler / reqsk_timer_handler (addresses from kallsyms, passed as
// TW_TIMER_FN / REQSK_TIMER_FN) finds those sockets; the timer's offset inside its socket
// (TW_TIMER_OFF / RSK_TIMER_OFF, from BTF) gives the socket's address.
//
// Two links rely on order within one call chain on one CPU (softirq, bottom halves off):
//   tcp_time_wait(): timer_start(timewait timer) -> set_state(FIN_WAIT2|CLOSING -> CLOSE)
//   third ACK:       set_state(child LISTEN -> SYN_RECV) -> timer_cancel(request timer)
// so a per-CPU slot carries the first half to the second, which takes it only if both name
// the same connection (same_connection, sockets.c) and the slot is recent (LINK_NS).

struct pending_timewait {
    u64 tw;        // the timewait socket's address
    u64 ts_ns;     // when its timer was armed
    u8 substate;   // TCP_FIN_WAIT2 or TCP_TIME_WAIT: where the timewait socket starts
};

#if OBSERVE_TIMERS

static __always_inline void hand_over_to_timewait(struct sock_entry *entry, int oldstate,
                                                  struct pending_timewait *timewait, u64 now)
{
    entry->facts |= FACT_TIMEWAIT;
    // Copied map value to map value: with a per-connection path the entry is too big for the
    // stack.
    sockets.update(&timewait->tw, entry);
    struct sock_entry *tw = sockets.lookup(&timewait->tw);
    if (tw) {
        tw->is_timewait = 1;
        tw->state = timewait->substate;
        tw->state_ns = now;
    }
    note_insert();
    gauge_move(-1, timewait->substate, entry->family);
    count_hand_over(oldstate, timewait->substate, entry->family);
}

// Far longer than one call chain, far shorter than anything unrelated on the same CPU.
#define ADJACENT_NS 1000000
// The links' bound: the identity check decides; this only ages a slot nobody took. Generous,
// because under software emulation one call chain can take longer than ADJACENT_NS.
#define LINK_NS 1000000000ULL

struct pending_child {
    u64 child;
    u64 ts_ns;
};

struct half_open {
    u64 syn_ns;          // when the request socket's timer was first armed: the SYN's arrival
    u64 expired_ns;      // when its timer last fired (the handler re-arms it, or drops it)
    u32 synack_retrans;
    u32 reserved;
};

BPF_PERCPU_ARRAY(timewait_slot, struct pending_timewait, 1);
BPF_PERCPU_ARRAY(child_slot, struct pending_child, 1);
BPF_TABLE("lru_hash", u64, struct half_open, half_open, MAX_HALF_OPEN);

// tcp_time_wait() arms the timewait socket's timer just before closing the full socket.
static __always_inline int find_timewait_successor(u64 skaddr, u64 now,
                                                   struct pending_timewait *out)
{
    u32 zero = 0;
    struct pending_timewait *slot = timewait_slot.lookup(&zero);
    if (!slot || !slot->tw || now - slot->ts_ns > LINK_NS || !same_connection(skaddr, slot->tw))
        return 0;
    *out = *slot;
    slot->tw = 0;
    return 1;
}

static __always_inline void note_child(u64 skaddr)
{
    u32 zero = 0;
    struct pending_child *slot = child_slot.lookup(&zero);
    if (slot) {
        slot->child = skaddr;
        slot->ts_ns = bpf_ktime_get_ns();
    }
}

static __always_inline u8 timewait_substate(u64 tw)
{
    u8 substate = 0;
    bpf_probe_read_kernel(&substate, sizeof(substate), (void *)(tw + TW_SUBSTATE_OFF));
    return substate;
}

// A tracked timewait socket's timer armed again: the peer's FIN moved it from FIN-WAIT-2 to
// TIME-WAIT. (Often not traced: the timer wheel may update an armed timer in place.)
static __always_inline void timewait_rearmed(u64 tw, struct sock_entry *entry, u64 now)
{
    u8 substate = timewait_substate(tw);
    if (substate == entry->state)
        return;
    u64 since = entry->state_ns;
    u8 oldstate = entry->state;
    entry->state = substate;
    entry->state_ns = now;
    gauge_move(oldstate, substate, entry->family);
    observe_state(oldstate, since, now);
    if (substate == TCP_TIME_WAIT_NUM)
        count_timewait(TW_REARMED, entry->family);
    struct synfin_event *event = start_event(EVENT_STATE_CHANGE, now, tw, entry);
    if (!event)
        return;
    event->since_ns = since;
    event->oldstate = oldstate;
    event->newstate = substate;
    event->detail = substate;
    send_event(event);
}

static __always_inline void timewait_ended(u64 tw, struct sock_entry *entry, u8 flags, u64 when)
{
    u8 substate = timewait_substate(tw);
    if (!substate)
        substate = entry->state;
    int expired = flags & EVENT_FLAG_TIMER_EXPIRED;
    gauge_move(entry->state, -1, entry->family);
    if (substate == TCP_TIME_WAIT_NUM) {
        count_timewait(expired ? TW_END_EXPIRED : TW_END_KILLED, entry->family);
        if (entry->state != TCP_TIME_WAIT_NUM)
            count_timewait(TW_END_UNSEEN_ENTRY, entry->family);  // FIN-WAIT-2/TIME-WAIT split unknown
        else
            observe_state(substate, entry->state_ns, when);
    } else {
        count_timewait(expired ? TW_END_FIN_WAIT2_EXPIRED : TW_END_FIN_WAIT2_KILLED, entry->family);
        observe_state(substate, entry->state_ns, when);
    }
    struct synfin_event *event = start_event(EVENT_TIMEWAIT_END, when, tw, entry);
    if (event) {
        event->since_ns = entry->state_ns;
        event->oldstate = substate;
        event->newstate = TCP_CLOSE_NUM;
        event->detail = substate;
        event->flags |= flags;
        send_event(event);
    }
    forget_timewait(tw);
}

// A cancelled timewait timer is a kill only if the same timer is not armed or run at once:
// mod_timer() moving an armed timer to another wheel bucket traces timer_cancel then
// timer_start, and expire_timers() detaches a due timer (timer_cancel) right before running
// it (timer_expire_entry). So a cancel waits in a per-CPU slot for the next timer event or
// softirq boundary on that CPU, which settles it.
struct pending_kill {
    u64 tw;
    u64 ts_ns;
};

BPF_PERCPU_ARRAY(kill_slot, struct pending_kill, 1);

static __always_inline void settle_kill(u64 same_timer)
{
    u32 zero = 0;
    struct pending_kill *slot = kill_slot.lookup(&zero);
    if (!slot || !slot->tw)
        return;
    u64 tw = slot->tw;
    u64 when = slot->ts_ns;
    slot->tw = 0;
    if (same_timer && same_timer - TW_TIMER_OFF == tw)
        return;  // re-armed or running: not a kill
    struct sock_entry *entry = sockets.lookup(&tw);
    if (entry && entry->is_timewait)
        timewait_ended(tw, entry, 0, when);  // killed early: RST, reuse, ss -K, netns exit
}

static __always_inline void on_timer_start(u64 timer, u64 function)
{
    u64 now = bpf_ktime_get_ns();
    settle_kill(function == TW_TIMER_FN ? timer : 0);
    if (function == TW_TIMER_FN) {
        u64 tw = timer - TW_TIMER_OFF;
        struct sock_entry *entry = sockets.lookup(&tw);
        if (entry && entry->is_timewait) {
            timewait_rearmed(tw, entry, now);
            return;
        }
        struct pending_timewait pending = {.tw = tw, .ts_ns = now};
        pending.substate = timewait_substate(tw);
        u32 zero = 0;
        timewait_slot.update(&zero, &pending);
    } else if (function == REQSK_TIMER_FN) {
        u64 req = timer - RSK_TIMER_OFF;
        // A re-arm from the timer's own handler (a SYN-ACK retransmit) keeps the first arming,
        // the SYN's arrival. Any other arming is a new request, perhaps at the address of one
        // that expired (its entry is never cancelled): it starts afresh.
        struct half_open *known = half_open.lookup(&req);
        if (known && known->expired_ns && now - known->expired_ns <= ADJACENT_NS)
            return;
        struct half_open fresh = {.syn_ns = now};
        half_open.update(&req, &fresh);
    }
}

static __always_inline void on_timer_expire(u64 timer, u64 function)
{
    settle_kill(function == TW_TIMER_FN ? timer : 0);
    if (function == REQSK_TIMER_FN) {
        u64 req = timer - RSK_TIMER_OFF;
        struct half_open *request = half_open.lookup(&req);
        if (request)
            request->expired_ns = bpf_ktime_get_ns();
        return;
    }
    if (function != TW_TIMER_FN)
        return;
    u64 tw = timer - TW_TIMER_OFF;
    struct sock_entry *entry = sockets.lookup(&tw);
    if (entry && entry->is_timewait)
        timewait_ended(tw, entry, EVENT_FLAG_TIMER_EXPIRED, bpf_ktime_get_ns());
    else
        count_stat(STAT_TIMEWAIT_UNTRACKED);
}

// The request's timer is cancelled when the third ACK completes the handshake, right after the
// child socket appeared on this CPU: the child inherits the SYN time. Other cancels (the
// detach before a SYN-ACK retransmit runs, a dropped request) leave the request alone: a
// re-arm keeps its first SYN time, and a dead one ages out of the LRU map.
static __always_inline void request_cancelled(u64 req, struct half_open *request)
{
    u32 zero = 0;
    struct pending_child *slot = child_slot.lookup(&zero);
    if (!slot || !slot->child || bpf_ktime_get_ns() - slot->ts_ns > LINK_NS ||
        !same_connection(slot->child, req))
        return;
    u64 child = slot->child;
    slot->child = 0;
    struct sock_entry *entry = sockets.lookup(&child);
    if (entry) {
        entry->start_ns = request->syn_ns;
        entry->state_ns = request->syn_ns;  // the textbook's SYN-RCVD began at the SYN
        entry->syn_retrans = request->synack_retrans;
        entry->facts |= FACT_SYN_OBSERVED;
    }
    half_open.delete(&req);
}

static __always_inline void on_timer_cancel(u64 timer, u64 function)
{
    settle_kill(0);
    if (function == TW_TIMER_FN) {
        u64 tw = timer - TW_TIMER_OFF;
        struct sock_entry *entry = sockets.lookup(&tw);
        if (entry && entry->is_timewait) {
            u32 zero = 0;
            struct pending_kill pending = {.tw = tw, .ts_ns = bpf_ktime_get_ns()};
            kill_slot.update(&zero, &pending);
        }
    } else if (function == REQSK_TIMER_FN) {
        u64 req = timer - RSK_TIMER_OFF;
        struct half_open *request = half_open.lookup(&req);
        if (request)
            request_cancelled(req, request);
    }
}

static __always_inline void on_synack_retransmit(u64 skaddr, u64 req)
{
    u32 index = RETRANSMIT_SYNACK * N_STATE_SLOTS + TCP_NEW_SYN_RECV_NUM;
    add_to(retransmits.lookup(&index));
    struct half_open *request = half_open.lookup(&req);
    if (request)
        request->synack_retrans += 1;
    // A Fast Open child resends its own SYN-ACK (`skaddr` is the child, not the listener).
    struct sock_entry *child = sockets.lookup(&skaddr);
    if (child && child->state == TCP_SYN_RECV_NUM) {
        child->facts |= FACT_SYN_RETRANSMITTED;
        if (child->syn_retrans < 255)
            child->syn_retrans += 1;
    }
}

// The request's timer gave the child its SYN time already.
static __always_inline void syn_time_from_handshake_rtt(u64 skaddr, struct sock_entry *entry,
                                                        u64 now) {}
#elif !TIMEWAIT_FROM_BUCKET
static __always_inline int find_timewait_successor(u64 skaddr, u64 now,
                                                   struct pending_timewait *out)
{
    return 0;
}
static __always_inline void hand_over_to_timewait(struct sock_entry *entry, int oldstate,
                                                  struct pending_timewait *timewait, u64 now) {}
static __always_inline void note_child(u64 skaddr) {}
static __always_inline void syn_time_from_handshake_rtt(u64 skaddr, struct sock_entry *entry,
                                                        u64 now) {}
#endif

#if TRACK_CONTEXT
// No softirq starts or ends inside the call chains that pair a timer's cancel with its re-arm
// or expiry (mod_timer() holds the timer base's lock with interrupts off; a due timer's cancel
// and run are one TIMER_SOFTIRQ), so a cancel still waiting in the slot at a softirq boundary
// is a kill. Without this, the last kill of a burst (`ss -K`) would wait for the CPU's next
// timer event: seconds on an idle CPU.
static __always_inline void at_softirq_boundary(void)
{
#if OBSERVE_TIMERS
    settle_kill(0);
#endif
}
#endif

// -- the timer hooks ----------------------------------------------------------------------

#if OBSERVE_TIMERS
// Raw tracepoints: these fire for every timer in the kernel, and a raw tracepoint skips
// building the trace record. Each one's first argument is the struct timer_list; its
// callback is read at the BTF offset TIMER_FUNCTION_OFF.
static __always_inline u64 timer_function(u64 timer)
{
    u64 function = 0;
    bpf_probe_read_kernel(&function, sizeof(function), (void *)(timer + TIMER_FUNCTION_OFF));
    return function;
}

RAW_TRACEPOINT_PROBE(timer_start)
{
    u64 timer = ctx->args[0];
    on_timer_start(timer, timer_function(timer));
    return 0;
}

RAW_TRACEPOINT_PROBE(timer_expire_entry)
{
    u64 timer = ctx->args[0];
    on_timer_expire(timer, timer_function(timer));
    return 0;
}

RAW_TRACEPOINT_PROBE(timer_cancel)
{
    // Still set while it is cancelled (timer_shutdown clears it only afterwards): only
    // timewait and request timers cost a map lookup.
    u64 timer = ctx->args[0];
    on_timer_cancel(timer, timer_function(timer));
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_retransmit_synack)
{
    on_synack_retransmit((u64)args->skaddr, (u64)args->req);
    return 0;
}
#endif
