// -- the stream ---------------------------------------------------------------------------

#if STREAM_EVENTS
// The BPF ring buffer needs Linux 5.8; without it synfin counts but does not stream.
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
#endif

BPF_ARRAY(filter_config, struct filter_config, 1);
BPF_HASH(filter_ports, u16, u8, MAX_FILTER_PORTS);

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
