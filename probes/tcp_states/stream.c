// -- the stream ---------------------------------------------------------------------------

#if STREAM_EVENTS
// The BPF ring buffer needs Linux 5.8; without it synfin counts but does not stream.
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
#endif
#if PER_CONNECTION
// Each step is built here, then kept in its socket's entry (keep_step) rather than sent. Two
// per CPU: a softirq may run a hook while a process-context hook is half-way through its own.
BPF_PERCPU_ARRAY(step_scratch, struct synfin_event, 2);
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
#if PER_CONNECTION
    u32 level = in_process_context() ? 0 : 1;
    struct synfin_event *event = step_scratch.lookup(&level);
    if (!event)
        return 0;
#else
    struct synfin_event *event = events.ringbuf_reserve(sizeof(struct synfin_event));
    if (!event) {
        count_stat(STAT_EVENTS_LOST);
        return 0;
    }
#endif
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

#if PER_CONNECTION
// One socket end's path so far, as one record; the entry starts a new path.
static __always_inline void send_connection(u64 skaddr, struct sock_entry *entry, u8 flags)
{
    struct synfin_connection *record = events.ringbuf_reserve(sizeof(struct synfin_connection));
    if (!record) {
        entry->path_len = 0;
        count_stat(STAT_EVENTS_LOST);
        return;
    }
    record->skaddr = skaddr;
    record->timewait = entry->timewait;
    record->start_ns = entry->start_ns;
    record->cgroup_id = entry->cgroup_id;
    record->owner_pid = entry->owner_pid;
    record->netns = entry->netns;
    record->facts = entry->facts;
    record->family = entry->family;
    record->sport = entry->sport;
    record->dport = entry->dport;
    record->syn_retrans = entry->syn_retrans;
    record->steps = entry->path_len;
    record->flags = flags;
    record->reserved = 0;
    __builtin_memcpy(record->saddr, entry->saddr, sizeof(record->saddr));
    __builtin_memcpy(record->daddr, entry->daddr, sizeof(record->daddr));
    __builtin_memcpy(record->comm, entry->comm, sizeof(record->comm));
    __builtin_memcpy(record->path, entry->path, sizeof(record->path));
    entry->path_len = 0;
    events.ringbuf_submit(record, 0);
    count_stat(STAT_EVENTS_SENT);
}

// The record names the full socket, also when its timewait socket sends it.
static __always_inline u64 full_socket_of(struct sock_entry *entry, u64 skaddr)
{
    return entry->is_timewait ? entry->full_socket : skaddr;
}

static __always_inline void append_step(u64 skaddr, struct sock_entry *entry,
                                        struct synfin_event *event)
{
    if (entry->path_len >= PATH_STEPS)  // a long path (resets, say): send what is kept so far
        send_connection(full_socket_of(entry, skaddr), entry, CONNECTION_FLAG_PART);
    u32 index = entry->path_len;
    if (index >= PATH_STEPS)
        return;
    struct path_step *step = &entry->path[index];
    step->ts_ns = event->ts_ns;
    step->pid = event->pid;
    step->reason = event->reason;
    step->kind = event->kind;
    step->oldstate = event->oldstate;
    step->newstate = event->newstate;
    step->flags = event->flags;
    step->detail = event->detail;
    step->reserved = 0;
    entry->path_len = index + 1;
}

// Keep a step in its socket's entry; send the socket end's record once that end is over.
static __always_inline void keep_step(struct synfin_event *event)
{
    u64 skaddr = event->skaddr;
    struct sock_entry *entry = skaddr ? sockets.lookup(&skaddr) : 0;
    if (!entry)
        return;  // a reset for no socket synfin follows: no connection to add it to
    if (event->aux) {
        // The hand-over: the timewait socket carries the path on from here.
        append_step(skaddr, entry, event);
        entry->timewait = event->aux;
        struct sock_entry *tw = sockets.lookup(&event->aux);
        if (tw) {
            __builtin_memcpy(tw->path, entry->path, sizeof(tw->path));
            tw->path_len = entry->path_len;
            tw->timewait = event->aux;
            tw->full_socket = skaddr;
        }
        return;
    }
    if (event->kind == EVENT_SOCKET_END && entry->timewait) {
        u64 tw_addr = entry->timewait;
        struct sock_entry *tw = sockets.lookup(&tw_addr);
        if (tw) {
            // Facts the full socket gathered after the hand-over count for the connection.
            tw->facts |= entry->facts;
            tw->syn_retrans = entry->syn_retrans;
            append_step(skaddr, tw, event);
            return;
        }
    }
    append_step(skaddr, entry, event);
    if (event->kind == EVENT_TIMEWAIT_END || event->kind == EVENT_SOCKET_END)
        send_connection(full_socket_of(entry, skaddr), entry, 0);
}
#endif

static __always_inline void send_event(struct synfin_event *event)
{
#if PER_CONNECTION
    keep_step(event);
#elif STREAM_EVENTS
    events.ringbuf_submit(event, 0);
    count_stat(STAT_EVENTS_SENT);
#endif
}
