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

// Whether the running task owns the socket `sk`: read from the socket's lock in the lean tier,
// from the softirq flag otherwise (where `sk` is not needed).
static __always_inline int in_process_context_of(struct sock *sk)
{
#if CONTEXT_FROM_LOCK
    return sk && socket_owned_by_process(sk);
#else
    return in_process_context();
#endif
}

#if STREAM_EVENTS
// The running task owns the socket only in process context: callers check first.
static __always_inline void capture_owner(struct sock_entry *entry)
{
    entry->owner_pid = bpf_get_current_pid_tgid() >> 32;
#if HAVE_CGROUP_ID
    entry->cgroup_id = bpf_get_current_cgroup_id();
#endif
    bpf_get_current_comm(entry->comm, sizeof(entry->comm));
}
#endif

#if TRACK_CONTEXT
// Defined with the timers (timewait.c): a softirq's start and end also settle a timewait kill.
static __always_inline void at_softirq_boundary(void);

RAW_TRACEPOINT_PROBE(softirq_entry)
{
    set_softirq_active(1);
    at_softirq_boundary();
    return 0;
}

RAW_TRACEPOINT_PROBE(softirq_exit)
{
    set_softirq_active(0);
    at_softirq_boundary();
    return 0;
}
#endif
