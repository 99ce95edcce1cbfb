// The record every synfin probe writes to its ring buffer, and the constants shared with
// collector/events.py, which decodes it. Change both together: the layout is pinned by
// tests/test_events.py against the compiled probe.
#ifndef SYNFIN_EVENTS_H
#define SYNFIN_EVENTS_H

// Plain numbers rather than kernel headers: the headers bcc compiles against may belong to
// another kernel version, and these values are ABI.
#define AF_INET_NUM 2
#define AF_INET6_NUM 10
#define IPPROTO_TCP_NUM 6
#define TCP_CLOSE_NUM 7

// Kernel TCP states are 1..13 today; slot 0 collects anything out of range.
#define N_STATE_SLOTS 16

#define MAX_FILTER_PORTS 1024

enum synfin_event_kind {
    EVENT_STATE_CHANGE = 1,
};

#define EVENT_FLAG_PROCESS_CONTEXT 0x1

enum synfin_stat {
    STAT_EVENTS_SENT = 0,
    STAT_EVENTS_LOST = 1,
    STAT_COUNT = 2,
};

struct synfin_event {
    u64 ts_ns;        // bpf_ktime_get_ns(): CLOCK_MONOTONIC
    u64 skaddr;       // the socket's address: the connection key while it lives
    u64 since_ns;     // when the socket entered oldstate; 0 when synfin did not see it
    u32 pid;          // tgid, only in process context, else 0
    u32 tid;
    u16 family;       // AF_INET or AF_INET6
    u16 sport;        // host byte order
    u16 dport;
    u8 kind;          // enum synfin_event_kind
    u8 flags;         // EVENT_FLAG_*
    u8 saddr[16];     // IPv6, or IPv4-mapped IPv6 for AF_INET
    u8 daddr[16];
    char comm[16];    // only in process context
    u8 oldstate;      // kernel TCP_* values
    u8 newstate;
    u8 reserved[6];
};

struct filter_config {
    u32 port_filter;  // 1: stream only events whose sport or dport is in filter_ports
    u16 family;       // 0: any, else AF_INET or AF_INET6
    u16 reserved;
};

#endif
