// synfin: every TCP state change, and the lifecycle of every connection around it.
//
// Counters live here, in per-CPU maps read at scrape time, so they stay exact whatever the
// event rate. Per-event records go to a ring buffer for the live views; a record that cannot be
// reserved is counted, never silently dropped. The probe records what it observes about each
// socket (FACT_* in synfin_events.h); collector/engine/lifecycle.py decides what that means.
//
// Tracepoint arguments are read as bcc lays them out from tracefs. A struct field is read only
// at an offset taken from the running kernel's BTF and passed in as a -D constant: the headers
// bcc compiles against may belong to another kernel version. collector/kernel/loader.py sets:
//   RINGBUF_PAGES, MAX_SOCKETS, MAX_HALF_OPEN, MAX_LISTENERS   sizes
//   TRACK_CONTEXT     1: tell process context from softirq (irq:softirq_entry/exit)
//   READ_NETNS        1: SKC_NET_OFF, NET_INUM_OFF give the socket's network namespace
//   READ_SHUTDOWN     1: SK_SHUTDOWN_OFF/_SHIFT/_BITS tell shutdown(SHUT_WR) from close()
//   OBSERVE_TIMERS    1: timewait and request sockets, through their timers (see there)
//   STREAM_EVENTS     0: counters only, no per-event records (`synfin run`, or Linux < 5.8)
//   HAVE_CGROUP_ID, HAVE_PROBE_READ_KERNEL   helpers of newer kernels (collector/kernel/features.py)
//   OBSERVE_RESETS    1: resets and SYN retransmits, with the layout switches RESET_* and
//                        RETRANSMIT_HAS_STATE; READ_SKB_NETNS for socketless resets
//
// One file, because bcc rewrites map accesses only in the file it is given.

#ifdef DECLARE_SK_RST_REASON
// The 6.10+ tcp_send_reset tracepoint names this enum; headers older than the kernel lack it.
enum sk_rst_reason { SK_RST_REASON_NOT_SPECIFIED = 0 };
#endif

#include "synfin_events.h"

#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 256
#endif
#ifndef MAX_SOCKETS
#define MAX_SOCKETS 65536
#endif
#ifndef TRACK_CONTEXT
#define TRACK_CONTEXT 1
#endif
#ifndef READ_NETNS
#define READ_NETNS 0
#endif
#ifndef READ_SHUTDOWN
#define READ_SHUTDOWN 0
#endif
#ifndef OBSERVE_TIMERS
#define OBSERVE_TIMERS 0
#endif
#ifndef OBSERVE_RESETS
#define OBSERVE_RESETS 0
#endif
#ifndef STREAM_EVENTS
#define STREAM_EVENTS 1
#endif
#ifndef HAVE_CGROUP_ID
#define HAVE_CGROUP_ID 1  // bpf_get_current_cgroup_id: Linux 4.18
#endif
#ifndef HAVE_PROBE_READ_KERNEL
#define HAVE_PROBE_READ_KERNEL 1  // Linux 5.5; before it, bpf_probe_read reads kernel memory
#endif
#if !HAVE_PROBE_READ_KERNEL
#define bpf_probe_read_kernel bpf_probe_read
#endif
#ifndef MAX_LISTENERS
#define MAX_LISTENERS 4096
#endif
#ifndef MAX_HALF_OPEN
#define MAX_HALF_OPEN 65536
#endif

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
    u8 saddr[16];
    u8 daddr[16];
    char comm[16];
};

#if STREAM_EVENTS
// The BPF ring buffer needs Linux 5.8; without it synfin counts but does not stream.
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
#endif

// transitions[(old * N_STATE_SLOTS + new) * 2 + is_ipv6]: every TCP transition, exact.
BPF_PERCPU_ARRAY(transitions, u64, N_STATE_SLOTS * N_STATE_SLOTS * 2);
BPF_PERCPU_ARRAY(stats, u64, STAT_COUNT);
// Entries in `sockets` right now (inserted minus removed), to notice LRU evictions.
BPF_ARRAY(sockets_live, s64, 1);
BPF_TABLE("lru_hash", u64, struct sock_entry, sockets, MAX_SOCKETS);

BPF_ARRAY(filter_config, struct filter_config, 1);
BPF_HASH(filter_ports, u16, u8, MAX_FILTER_PORTS);

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

// -- process context ---------------------------------------------------------------------

#if TRACK_CONTEXT
// Per-CPU "serving a softirq" flag. A state change driven by an arriving segment or a timer
// runs in softirq on top of whichever task was interrupted (on loopback, often the peer), so
// the current PID names the socket's owner only when this flag is clear.
BPF_PERCPU_ARRAY(softirq_active, u32, 1);

static __always_inline void set_softirq_active(u32 value)
{
    u32 zero = 0;
    u32 *active = softirq_active.lookup(&zero);
    if (active)
        *active = value;
}

static __always_inline int in_process_context(void)
{
    u32 zero = 0;
    u32 *active = softirq_active.lookup(&zero);
    return active && *active == 0;
}
#else
static __always_inline int in_process_context(void)
{
    return 0;
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

// sk_shutdown is a plain u8 since 6.4 and a 2-bit field before: offset, shift and width from BTF.
static __always_inline u32 socket_shutdown(u64 skaddr)
{
#if READ_SHUTDOWN
    u8 byte = 0;
    bpf_probe_read_kernel(&byte, sizeof(byte), (void *)(skaddr + SK_SHUTDOWN_OFF));
    return (byte >> SK_SHUTDOWN_SHIFT) & ((1u << SK_SHUTDOWN_BITS) - 1);
#else
    return 0;
#endif
}

// -- the sockets map ----------------------------------------------------------------------

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

static __always_inline void capture_owner(struct sock_entry *entry)
{
    entry->owner_pid = bpf_get_current_pid_tgid() >> 32;
#if HAVE_CGROUP_ID
    entry->cgroup_id = bpf_get_current_cgroup_id();
#endif
    bpf_get_current_comm(entry->comm, sizeof(entry->comm));
}

// -- the stream ---------------------------------------------------------------------------

static __always_inline int stream_wanted(u16 family, u16 sport, u16 dport)
{
#if !STREAM_EVENTS
    return 0;  // metrics only (`synfin run`): counters do not need the stream
#endif
    u32 zero = 0;
    struct filter_config *config = filter_config.lookup(&zero);
    if (!config)
        return 1;
    if (config->family && config->family != family)
        return 0;
    if (config->port_filter) {
        // Either end may be the port asked for; a client's first event has sport 0 (the
        // ephemeral port is chosen after CLOSE -> SYN_SENT), so dport must match alone.
        if (!filter_ports.lookup(&sport) && !filter_ports.lookup(&dport))
            return 0;
    }
    return 1;
}

// Reserve a record for `entry`'s socket, filled from the entry; NULL if filtered out or lost.
static __always_inline struct synfin_event *
start_event(u8 kind, u64 now, u64 skaddr, struct sock_entry *entry)
{
#if !STREAM_EVENTS
    return 0;
#else
    if (!stream_wanted(entry->family, entry->sport, entry->dport))
        return 0;
    struct synfin_event *event = events.ringbuf_reserve(sizeof(struct synfin_event));
    if (!event) {
        count_stat(STAT_EVENTS_LOST);
        return 0;
    }
    __builtin_memset(event, 0, sizeof(*event));
    event->kind = kind;
    event->ts_ns = now;
    event->skaddr = skaddr;
    event->start_ns = entry->start_ns;
    event->cgroup_id = entry->cgroup_id;
    event->owner_pid = entry->owner_pid;
    event->netns = entry->netns;
    event->facts = entry->facts;
    event->family = entry->family;
    event->sport = entry->sport;
    event->dport = entry->dport;
    event->syn_retrans = entry->syn_retrans;
    event->detail = entry->reset_state;
    event->reason = entry->reset_reason;
    __builtin_memcpy(event->saddr, entry->saddr, sizeof(event->saddr));
    __builtin_memcpy(event->daddr, entry->daddr, sizeof(event->daddr));
    __builtin_memcpy(event->comm, entry->comm, sizeof(event->comm));
    if (in_process_context()) {
        event->pid = bpf_get_current_pid_tgid() >> 32;
        event->flags |= EVENT_FLAG_PROCESS_CONTEXT;
    }
    if (entry->is_timewait)
        event->flags |= EVENT_FLAG_TIMEWAIT;
    return event;
#endif
}

static __always_inline void send_event(struct synfin_event *event)
{
#if STREAM_EVENTS
    events.ringbuf_submit(event, 0);
    count_stat(STAT_EVENTS_SENT);
#endif
}

// -- metrics ------------------------------------------------------------------------------
//
// Everything `synfin run` exports is counted here, whether or not anything reads the stream.
// Per-CPU maps: no atomics on the hot path; the collector sums the CPUs at scrape time.

#ifndef ENDING_FACTS_MASK
#define ENDING_FACTS_MASK 0xffffffff
#endif
#ifndef MAX_ENDINGS
#define MAX_ENDINGS 4096
#endif
#ifndef MAX_LABEL_PORTS
#define MAX_LABEL_PORTS 256
#endif

// Tracked sockets per (kernel state, family): moved on every change, so a scrape reads them.
BPF_PERCPU_ARRAY(sockets_by_state, s64, N_STATE_SLOTS * 2);
BPF_PERCPU_ARRAY(handshake_seconds, struct hist, N_ROLES);
BPF_PERCPU_ARRAY(state_seconds, struct hist, N_STATE_SLOTS);
BPF_PERCPU_ARRAY(connection_seconds, struct hist, N_ROLES);
BPF_PERCPU_ARRAY(resets_sent, u64, N_STATE_SLOTS * N_RESET_REASONS);
BPF_PERCPU_ARRAY(resets_received, u64, N_STATE_SLOTS);
BPF_PERCPU_ARRAY(retransmits, u64, N_RETRANSMIT_KINDS * N_STATE_SLOTS);
BPF_PERCPU_ARRAY(timewait_counts, u64, N_TIMEWAIT_COUNTERS * 2);
BPF_PERCPU_HASH(opens, struct open_key, u64, MAX_ENDINGS);
BPF_PERCPU_HASH(endings, struct ending_key, u64, MAX_ENDINGS);
// Ports that get their own label (from --port-label); every other port is 0, "other".
BPF_HASH(label_ports, u16, u8, MAX_LABEL_PORTS);
// 1: every port a local listener accepts on gets its own label too (--port-label-listening).
BPF_ARRAY(label_listening, u32, 1);

static __always_inline u32 family_slot(u16 family)
{
    return family == AF_INET6_NUM;
}

static __always_inline void add_to(u64 *counter)
{
    if (counter)
        *counter += 1;
}

static __always_inline void gauge_move(int from, int to, u16 family)
{
    u32 index;
    s64 *value;
    if (from >= 0) {
        index = state_slot(from) * 2 + family_slot(family);
        value = sockets_by_state.lookup(&index);
        if (value)
            *value -= 1;
    }
    if (to >= 0) {
        index = state_slot(to) * 2 + family_slot(family);
        value = sockets_by_state.lookup(&index);
        if (value)
            *value += 1;
    }
}

static __always_inline void observe(struct hist *hist, u64 ns)
{
    if (!hist)
        return;
    // Slot 0 is under 1 us; slot b >= 1 is [2^(b-1), 2^b) us; the last slot is the rest.
    u64 us = ns / 1000;
    u32 slot = us ? bpf_log2l(us) : 0;
    if (slot >= HIST_SLOTS)
        slot = HIST_SLOTS - 1;
    hist->slots[slot] += 1;
    hist->sum_ns += ns;
}

static __always_inline void observe_state(int state, u64 since, u64 now)
{
    if (!since || since > now || state == TCP_CLOSE_NUM)
        return;
    u32 index = state_slot(state);
    observe(state_seconds.lookup(&index), now - since);
}

static __always_inline u16 port_label(u16 port, int listening)
{
    u32 zero = 0;
    u32 *all_listening = label_listening.lookup(&zero);
    if (listening && all_listening && *all_listening)
        return port;
    return label_ports.lookup(&port) ? port : 0;
}

static __always_inline void count_open(u16 kind, struct sock_entry *entry)
{
    struct open_key key = {.kind = kind, .family = entry->family};
    key.port = kind == OPEN_ACCEPTED ? port_label(entry->sport, 1) : port_label(entry->dport, 0);
    u64 zero = 0;
    add_to(opens.lookup_or_try_init(&key, &zero));
}

static __always_inline void count_ending(struct sock_entry *entry)
{
    struct ending_key key = {.facts = entry->facts & ENDING_FACTS_MASK, .family = entry->family};
    int passive = (entry->facts & FACT_PASSIVE_OPEN) != 0;
    key.port = passive ? port_label(entry->sport, 1) : port_label(entry->dport, 0);
    u64 zero = 0;
    add_to(endings.lookup_or_try_init(&key, &zero));
}

static __always_inline void count_timewait(u32 counter, u16 family)
{
    u32 index = counter * 2 + family_slot(family);
    add_to(timewait_counts.lookup(&index));
}

// -- listeners: a child socket is first owned by whoever listened --------------------------

struct listener_key {
    u32 netns;
    u32 port;
};

struct owner {
    u64 cgroup_id;
    u32 pid;
    char comm[16];
};

BPF_HASH(listeners, struct listener_key, struct owner, MAX_LISTENERS);

static __always_inline void track_listener(int oldstate, int newstate, struct sock_entry *entry)
{
    struct listener_key key = {.netns = entry->netns, .port = entry->sport};
    if (newstate == TCP_LISTEN_NUM && entry->owner_pid) {
        struct owner owner = {.cgroup_id = entry->cgroup_id, .pid = entry->owner_pid};
        __builtin_memcpy(owner.comm, entry->comm, sizeof(owner.comm));
        listeners.update(&key, &owner);
    } else if (oldstate == TCP_LISTEN_NUM && newstate == TCP_CLOSE_NUM) {
        listeners.delete(&key);
    }
}

static __always_inline void inherit_listener_owner(struct sock_entry *child)
{
    struct listener_key key = {.netns = child->netns, .port = child->sport};
    struct owner *owner = listeners.lookup(&key);
    if (!owner || child->owner_pid)
        return;
    child->owner_pid = owner->pid;
    child->cgroup_id = owner->cgroup_id;
    __builtin_memcpy(child->comm, owner->comm, sizeof(child->comm));
}

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
// so a per-CPU slot carries the first half to the second.

struct pending_timewait {
    u64 tw;        // the timewait socket's address
    u64 ts_ns;     // when its timer was armed
    u8 substate;   // TCP_FIN_WAIT2 or TCP_TIME_WAIT: where the timewait socket starts
};

static __always_inline void hand_over_to_timewait(struct sock_entry *entry, int oldstate,
                                                  struct pending_timewait *timewait, u64 now)
{
    entry->facts |= FACT_TIMEWAIT;
    struct sock_entry tw = *entry;
    tw.is_timewait = 1;
    tw.state = timewait->substate;
    tw.state_ns = now;
    sockets.update(&timewait->tw, &tw);
    note_insert();
    gauge_move(-1, timewait->substate, entry->family);
    if (oldstate == TCP_CLOSING_NUM)
        count_timewait(TW_HANDOVER_CLOSING, entry->family);
    else if (timewait->substate == TCP_TIME_WAIT_NUM)
        count_timewait(TW_HANDOVER_TIME_WAIT, entry->family);
    else
        count_timewait(TW_HANDOVER_FIN_WAIT2, entry->family);
}

#if OBSERVE_TIMERS

// Far longer than one call chain, far shorter than anything unrelated on the same CPU.
#define ADJACENT_NS 1000000

struct pending_child {
    u64 child;
    u64 ts_ns;
};

struct half_open {
    u64 syn_ns;          // when the request socket's timer was first armed: the SYN's arrival
    u32 synack_retrans;
    u32 reserved;
};

BPF_PERCPU_ARRAY(timewait_slot, struct pending_timewait, 1);
BPF_PERCPU_ARRAY(child_slot, struct pending_child, 1);
BPF_TABLE("lru_hash", u64, struct half_open, half_open, MAX_HALF_OPEN);

static __always_inline int take_timewait(u64 now, struct pending_timewait *out)
{
    u32 zero = 0;
    struct pending_timewait *slot = timewait_slot.lookup(&zero);
    if (!slot || !slot->tw || now - slot->ts_ns > ADJACENT_NS)
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
    forget_socket(tw);
}

// A cancelled timewait timer is a kill only if the same timer is not armed or run at once:
// mod_timer() moving an armed timer to another wheel bucket traces timer_cancel then
// timer_start, and expire_timers() detaches a due timer (timer_cancel) right before running
// it (timer_expire_entry). So a cancel waits in a per-CPU slot for the next timer event on
// that CPU, which settles it.
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
        struct half_open fresh = {.syn_ns = now};
        // Re-arms (SYN-ACK retransmits) must keep the first arming: the SYN's arrival.
        half_open.insert(&req, &fresh);
    }
}

static __always_inline void on_timer_expire(u64 timer, u64 function)
{
    settle_kill(function == TW_TIMER_FN ? timer : 0);
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
    if (!slot || !slot->child || bpf_ktime_get_ns() - slot->ts_ns > ADJACENT_NS)
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

static __always_inline void on_synack_retransmit(u64 req)
{
    u32 index = RETRANSMIT_SYNACK * N_STATE_SLOTS + TCP_NEW_SYN_RECV_NUM;
    add_to(retransmits.lookup(&index));
    struct half_open *request = half_open.lookup(&req);
    if (request)
        request->synack_retrans += 1;
}
#else
static __always_inline int take_timewait(u64 now, struct pending_timewait *out) { return 0; }
static __always_inline void note_child(u64 skaddr) {}
#endif

#if OBSERVE_RESETS
// -- resets and retransmits ---------------------------------------------------------------
//
// Resets and SYN retransmissions, folded into the socket's facts and streamed. Layout switches, set by collector/kernel/loader.py from the tracepoints' formats:
//   RESET_HAS_STATE      tcp_send_reset has `state` (5.0+)
//   RESET_HAS_REASON     tcp_send_reset has `reason` (6.10+)
//   RESET_SOCKADDR       tcp_send_reset has sockaddr-form saddr/daddr and fires without a
//                        socket (6.10+); READ_SKB_NETNS then gives such a reset's namespace
//   RETRANSMIT_HAS_STATE tcp_retransmit_skb has `state` (5.0+)
//   RETRANSMIT_HAS_ERR   tcp_retransmit_skb has `err` and fires for failed attempts too (6.18+)

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

// A reset this host sent. `sockaddrs` (6.10+ layout) describe it when there is no socket.
static __always_inline void on_reset_sent(u64 skaddr, u64 skbaddr, u8 state, u16 reason,
                                          const u8 *local, const u8 *remote)
{
    u32 index = state_slot(state) * N_RESET_REASONS +
                (reason < N_RESET_REASONS ? reason : N_RESET_REASONS - 1);
    add_to(resets_sent.lookup(&index));
    struct sock_entry *entry = skaddr ? sockets.lookup(&skaddr) : 0;
    struct sock_entry scratch = {};
    if (entry) {
        entry->facts |= FACT_RESET_SENT;
        if (in_process_context())
            entry->facts |= FACT_RESET_SENT_BY_PROCESS;
        entry->reset_state = state ? state : entry->state;
        entry->reset_reason = reason;
    } else {
#if RESET_SOCKADDR
        // No socket (a segment to a closed port, say), or one synfin never saw.
        scratch.family = from_sockaddr(local, scratch.saddr);
        from_sockaddr(remote, scratch.daddr);
        scratch.sport = sockaddr_port(local);
        scratch.dport = sockaddr_port(remote);
        scratch.netns = skaddr ? socket_netns(skaddr) : skb_netns(skbaddr);
        scratch.reset_state = state;
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

static __always_inline void on_reset_received(u64 skaddr, int state)
{
    u32 index = state_slot(state);
    add_to(resets_received.lookup(&index));
    struct sock_entry *entry = sockets.lookup(&skaddr);
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

static __always_inline void on_retransmit(u64 skaddr, int state_or_unknown)
{
    struct sock_entry *entry = sockets.lookup(&skaddr);
    int state = state_or_unknown >= 0 ? state_or_unknown : (entry ? entry->state : 0);
    u32 kind = state == TCP_SYN_SENT_NUM ? RETRANSMIT_SYN : RETRANSMIT_DATA;
    u32 index = kind * N_STATE_SLOTS + state_slot(state);
    add_to(retransmits.lookup(&index));
    if (!entry)
        return;
    if (state == TCP_SYN_SENT_NUM) {
        entry->facts |= FACT_SYN_RETRANSMITTED;
        if (entry->syn_retrans < 255)
            entry->syn_retrans += 1;
    }
}
#endif

// -- state changes ------------------------------------------------------------------------

static __always_inline u32 facts_for(int oldstate, int newstate, u64 skaddr, int in_process)
{
    u32 facts = 0;
    if (oldstate == TCP_CLOSE_NUM && newstate == TCP_SYN_SENT_NUM)
        facts |= FACT_ACTIVE_OPEN;
    if (oldstate == TCP_LISTEN_NUM && newstate == TCP_SYN_RECV_NUM)
        facts |= FACT_PASSIVE_OPEN;
    if (oldstate == TCP_SYN_SENT_NUM && newstate == TCP_SYN_RECV_NUM)
        facts |= FACT_SIMULTANEOUS_OPEN;
    if (newstate == TCP_ESTABLISHED_NUM)
        facts |= FACT_ESTABLISHED;
    if (newstate == TCP_FIN_WAIT1_NUM) {
        facts |= FACT_LOCAL_FIN_FIRST;
        // close() marks both directions shut before sending FIN; shutdown(SHUT_WR) only one.
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
    }
    return facts;
}

static __always_inline void handshake_done(int oldstate, struct sock_entry *entry, u64 now)
{
    u32 role;
    if (oldstate == TCP_SYN_SENT_NUM && (entry->facts & FACT_ACTIVE_OPEN)) {
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

static __always_inline struct sock_entry *entry_for(u64 skaddr, u64 now, int oldstate, int newstate)
{
    struct sock_entry *entry = sockets.lookup(&skaddr);
    if (entry)
        return entry;
    struct sock_entry fresh = {};
    fresh.start_ns = now;
    fresh.state = oldstate;
    fresh.netns = socket_netns(skaddr);
    int opening = oldstate == TCP_CLOSE_NUM ||
                  (oldstate == TCP_LISTEN_NUM && newstate == TCP_SYN_RECV_NUM);
    if (!opening)
        fresh.facts |= FACT_PREEXISTING;
    sockets.update(&skaddr, &fresh);
    note_insert();
    return sockets.lookup(&skaddr);
}

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    // The tracepoint is shared with SCTP and MPTCP.
    if (args->protocol != IPPROTO_TCP_NUM)
        return 0;

    u64 now = bpf_ktime_get_ns();
    u64 skaddr = (u64)args->skaddr;
    int oldstate = args->oldstate, newstate = args->newstate;
    u32 index = (state_slot(oldstate) * N_STATE_SLOTS + state_slot(newstate)) * 2 +
                (args->family == AF_INET6_NUM);
    u64 *count = transitions.lookup(&index);
    if (count)
        *count += 1;

    struct sock_entry *entry = entry_for(skaddr, now, oldstate, newstate);
    if (!entry)
        return 0;
    int in_process = in_process_context();
    u64 since = entry->state_ns;  // 0 for a socket seen for the first time
    gauge_move(since ? oldstate : -1, newstate, args->family);
    observe_state(oldstate, since, now);
    entry->facts |= facts_for(oldstate, newstate, skaddr, in_process);
    entry->state = newstate;
    entry->state_ns = now;
    entry->family = args->family;
    entry->sport = args->sport;
    entry->dport = args->dport;
#if STREAM_EVENTS
    // Only the stream shows addresses and owners; the counters need neither.
    // IPv4 sockets fill the v6 fields too (v4-mapped), so one copy serves both families.
    __builtin_memcpy(entry->saddr, args->saddr_v6, sizeof(entry->saddr));
    __builtin_memcpy(entry->daddr, args->daddr_v6, sizeof(entry->daddr));
    if (in_process)
        capture_owner(entry);
#endif
    track_listener(oldstate, newstate, entry);
    if (oldstate == TCP_LISTEN_NUM && newstate == TCP_SYN_RECV_NUM) {
        inherit_listener_owner(entry);
        note_child(skaddr);
        count_open(OPEN_ACCEPTED, entry);
    }
    if (newstate == TCP_ESTABLISHED_NUM)
        handshake_done(oldstate, entry, now);

    // tcp_time_wait() arms the timewait socket's timer just before closing the full socket.
    struct pending_timewait timewait = {};
    if (newstate == TCP_CLOSE_NUM &&
        (oldstate == TCP_FIN_WAIT2_NUM || oldstate == TCP_CLOSING_NUM) &&
        take_timewait(now, &timewait))
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
TRACEPOINT_PROBE(tcp, tcp_destroy_sock)
{
    u64 skaddr = (u64)args->skaddr;
    struct sock_entry *entry = sockets.lookup(&skaddr);
    if (!entry)
        return 0;
    gauge_move(entry->state, -1, entry->family);
    count_ending(entry);
    connection_done(entry, bpf_ktime_get_ns());
    struct synfin_event *event = start_event(EVENT_SOCKET_END, bpf_ktime_get_ns(), skaddr, entry);
    if (event) {
        event->oldstate = entry->state;
        event->newstate = entry->state;
        send_event(event);
    }
    forget_socket(skaddr);
    return 0;
}

// -- process context ----------------------------------------------------------------------

#if TRACK_CONTEXT
RAW_TRACEPOINT_PROBE(softirq_entry)
{
    set_softirq_active(1);
    return 0;
}

RAW_TRACEPOINT_PROBE(softirq_exit)
{
    set_softirq_active(0);
    return 0;
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
    on_synack_retransmit((u64)args->req);
    return 0;
}
#endif

// -- the reset and retransmit hooks -------------------------------------------------------

#if OBSERVE_RESETS
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
    on_reset_sent((u64)args->skaddr, (u64)args->skbaddr, state, reason, local, remote);
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_receive_reset)
{
    u64 skaddr = (u64)args->skaddr;
    struct sock_entry *entry = sockets.lookup(&skaddr);
    on_reset_received(skaddr, entry ? entry->state : 0);
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
#if RETRANSMIT_HAS_ERR
    // Since 6.18 the tracepoint also fires for retransmissions that failed to go out; like
    // the kernel's RetransSegs, count only the ones that did.
    if (args->err)
        return 0;
#endif
#if RETRANSMIT_HAS_STATE
    on_retransmit((u64)args->skaddr, args->state);
#else
    on_retransmit((u64)args->skaddr, -1);
#endif
    return 0;
}
#endif
