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

// transitions[(old * N_STATE_SLOTS + new) * 2 + is_ipv6]: every TCP transition, exact.
BPF_PERCPU_ARRAY(transitions, u64, N_STATE_SLOTS * N_STATE_SLOTS * 2);
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
    // Linux 6.1's verifier rejects the index if clang bounds-checks one copy of the register
    // and indexes with another ("unbounded memory access"): keep the clamped value in one.
    asm volatile("" : "+r"(slot));
    if (slot >= HIST_SLOTS)
        return;
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

// A full socket handed over to a timewait socket that starts in `substate`.
static __always_inline void count_hand_over(int oldstate, u8 substate, u16 family)
{
    if (oldstate == TCP_CLOSING_NUM)
        count_timewait(TW_HANDOVER_CLOSING, family);
    else if (substate == TCP_TIME_WAIT_NUM)
        count_timewait(TW_HANDOVER_TIME_WAIT, family);
    else
        count_timewait(TW_HANDOVER_FIN_WAIT2, family);
}
