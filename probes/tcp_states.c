// synfin: every TCP state change, from sock:inet_sock_set_state.
//
// Counters live here, in per-CPU maps read at scrape time, so they stay exact whatever the
// event rate. Per-event records go to a ring buffer for the live views; a record that cannot be
// reserved is counted, never silently dropped.
//
// Only tracepoint arguments are read: bcc compiles against whatever kernel headers the host
// has, which may be another kernel version, so no struct is read through the headers' layout.
//
// Compile-time settings (passed by collector/probes.py as -D flags):
//   RINGBUF_PAGES   ring buffer size in pages (power of two)
//   MAX_SOCKETS     capacity of the per-socket state-entry map
//   TRACK_CONTEXT   1 to tell process context from softirq (attaches irq:softirq_entry/exit)

#include "synfin_events.h"

#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 64
#endif
#ifndef MAX_SOCKETS
#define MAX_SOCKETS 65536
#endif
#ifndef TRACK_CONTEXT
#define TRACK_CONTEXT 1
#endif

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);

// transitions[(old * N_STATE_SLOTS + new) * 2 + is_ipv6]: every TCP transition, exact.
BPF_PERCPU_ARRAY(transitions, u64, N_STATE_SLOTS * N_STATE_SLOTS * 2);
BPF_PERCPU_ARRAY(stats, u64, STAT_COUNT);

// When each socket entered its current state, so an event can say how long it stayed there.
BPF_TABLE("lru_hash", u64, u64, state_since, MAX_SOCKETS);

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

#if TRACK_CONTEXT
// Per-CPU "serving a softirq" flag. A state change driven by an arriving segment or a timer runs
// in softirq on top of whichever task was interrupted (on loopback, often the peer), so the
// current PID names the socket's owner only when this flag is clear.
BPF_PERCPU_ARRAY(softirq_active, u32, 1);

RAW_TRACEPOINT_PROBE(softirq_entry)
{
    u32 zero = 0;
    u32 *active = softirq_active.lookup(&zero);
    if (active)
        *active = 1;
    return 0;
}

RAW_TRACEPOINT_PROBE(softirq_exit)
{
    u32 zero = 0;
    u32 *active = softirq_active.lookup(&zero);
    if (active)
        *active = 0;
    return 0;
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

static __always_inline int stream_wanted(u16 family, u16 sport, u16 dport)
{
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

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    // The tracepoint is shared with SCTP and MPTCP.
    if (args->protocol != IPPROTO_TCP_NUM)
        return 0;

    u64 now = bpf_ktime_get_ns();
    u64 skaddr = (u64)args->skaddr;
    u16 family = args->family;
    u32 old_slot = state_slot(args->oldstate);
    u32 new_slot = state_slot(args->newstate);

    u32 index = (old_slot * N_STATE_SLOTS + new_slot) * 2 + (family == AF_INET6_NUM);
    u64 *count = transitions.lookup(&index);
    if (count)
        *count += 1;

    u64 since = 0;
    u64 *entered = state_since.lookup(&skaddr);
    if (entered)
        since = *entered;
    if (args->newstate == TCP_CLOSE_NUM)
        state_since.delete(&skaddr);
    else
        state_since.update(&skaddr, &now);

    if (!stream_wanted(family, args->sport, args->dport))
        return 0;

    struct synfin_event *event = events.ringbuf_reserve(sizeof(struct synfin_event));
    if (!event) {
        count_stat(STAT_EVENTS_LOST);
        return 0;
    }
    __builtin_memset(event, 0, sizeof(*event));
    event->ts_ns = now;
    event->skaddr = skaddr;
    event->since_ns = since;
    event->family = family;
    event->sport = args->sport;
    event->dport = args->dport;
    event->kind = EVENT_STATE_CHANGE;
    event->oldstate = args->oldstate;
    event->newstate = args->newstate;
    // IPv4 sockets fill the v6 fields too (v4-mapped), so one copy serves both families.
    __builtin_memcpy(event->saddr, args->saddr_v6, sizeof(event->saddr));
    __builtin_memcpy(event->daddr, args->daddr_v6, sizeof(event->daddr));
    if (in_process_context()) {
        u64 pid_tgid = bpf_get_current_pid_tgid();
        event->pid = pid_tgid >> 32;
        event->tid = (u32)pid_tgid;
        event->flags |= EVENT_FLAG_PROCESS_CONTEXT;
        bpf_get_current_comm(event->comm, sizeof(event->comm));
    }
    events.ringbuf_submit(event, 0);
    count_stat(STAT_EVENTS_SENT);
    return 0;
}
