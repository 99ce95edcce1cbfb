// The records synfin's probe writes to its ring buffer, and every constant shared with Python.
// This file is the one definition: Python parses it when synfin starts
// (collector/records/abi.py), tests/unit/test_abi.py checks that parse against a C compiler,
// and the loader checks each map's key and value sizes against it. Keep to what abi.py reads:
// integer #defines, enums, and structs of fixed-size fields.
#ifndef SYNFIN_EVENTS_H
#define SYNFIN_EVENTS_H

// Plain numbers rather than kernel headers: the headers bcc compiles against may belong to
// another kernel version, and these values are ABI.
#define AF_INET_NUM 2
#define AF_INET6_NUM 10
#define IPPROTO_TCP_NUM 6
#define TCP_ESTABLISHED_NUM 1
#define TCP_SYN_SENT_NUM 2
#define TCP_SYN_RECV_NUM 3
#define TCP_FIN_WAIT1_NUM 4
#define TCP_FIN_WAIT2_NUM 5
#define TCP_TIME_WAIT_NUM 6
#define TCP_CLOSE_NUM 7
#define TCP_CLOSE_WAIT_NUM 8
#define TCP_LAST_ACK_NUM 9
#define TCP_LISTEN_NUM 10
#define TCP_CLOSING_NUM 11
#define TCP_NEW_SYN_RECV_NUM 12
#define SEND_SHUTDOWN_BIT 2
#define RCV_SHUTDOWN_BIT 1
#define ETIMEDOUT_NUM 110

// Kernel TCP states are 1..13 today; slot 0 collects anything out of range.
#define N_STATE_SLOTS 16

#define MAX_FILTER_PORTS 1024

enum synfin_event_kind {
    EVENT_STATE_CHANGE = 1,  // a full socket changed state
    EVENT_SOCKET_END = 2,    // tcp:tcp_destroy_sock: the full socket is gone; facts are final
    EVENT_TIMEWAIT_END = 3,  // the timewait socket that carried FIN-WAIT-2/TIME-WAIT is gone
    EVENT_RESET_SENT = 4,    // this host sent a RST (skaddr 0: no socket, e.g. closed port)
    EVENT_RESET_RECEIVED = 5,
};

#define EVENT_FLAG_PROCESS_CONTEXT 0x1  // pid is the process this ran in
#define EVENT_FLAG_TIMER_EXPIRED 0x2    // TIMEWAIT_END: its timer ran out (else: killed)
#define EVENT_FLAG_TIMEWAIT 0x4         // about a timewait socket (seen through its timer)

// What the kernel showed happening to one socket, accumulated while it lives. The probe only
// records observations; collector/engine/lifecycle.py decides what they mean.
#define FACT_ACTIVE_OPEN (1u << 0)        // CLOSE -> SYN_SENT (connect)
#define FACT_PASSIVE_OPEN (1u << 1)       // LISTEN -> SYN_RECV (child of a listener)
#define FACT_SIMULTANEOUS_OPEN (1u << 2)  // SYN_SENT -> SYN_RECV
#define FACT_ESTABLISHED (1u << 3)
#define FACT_LOCAL_FIN_FIRST (1u << 4)    // -> FIN_WAIT1: this side closed first
#define FACT_REMOTE_FIN_FIRST (1u << 5)   // -> CLOSE_WAIT: the peer closed first
#define FACT_CLOSING (1u << 6)            // FIN_WAIT1 -> CLOSING: both closed at once
#define FACT_HALF_CLOSE (1u << 7)         // -> FIN_WAIT1 by shutdown(SHUT_WR), not close()
#define FACT_RESET_RECEIVED (1u << 8)
#define FACT_RESET_SENT (1u << 9)
#define FACT_RESET_SENT_BY_PROCESS (1u << 10)  // the RST went out from a syscall (abort)
#define FACT_CLOSED_BY_PROCESS (1u << 11) // -> CLOSE ran in a syscall (close, abort)
#define FACT_TIMEWAIT (1u << 12)          // handed over to a timewait socket
#define FACT_SYN_OBSERVED (1u << 13)      // passive: start_ns is the SYN's arrival
#define FACT_PREEXISTING (1u << 14)       // first seen mid-life: began before synfin
#define FACT_SYN_RETRANSMITTED (1u << 15)
#define FACT_CLOSED (1u << 16)            // reached CLOSE
#define FACT_LISTENED (1u << 17)          // -> LISTEN: a listening socket, not a connection
#define FACT_CLOSED_AFTER_SHUTDOWN (1u << 18)  // close() announced the state it was already in
#define FACT_NO_SYN_SENT (1u << 19)       // closed in SYN-SENT before any SYN left (deferred
                                          // connect of TCP_FASTOPEN_CONNECT)
#define FACT_TIMED_OUT (1u << 20)         // -> CLOSE with ETIMEDOUT: retransmissions or
                                          // TCP_USER_TIMEOUT gave up
#define FACT_FAST_OPEN (1u << 21)         // a Fast Open child: created at the SYN, with data

enum synfin_stat {
    STAT_EVENTS_SENT = 0,
    STAT_EVENTS_LOST = 1,
    STAT_SOCKETS_TRACKED = 2,   // entries created in the sockets map
    STAT_SOCKETS_EVICTED = 3,   // created while the map was full: an older entry was evicted
    STAT_TIMEWAIT_UNTRACKED = 4,  // a timewait socket ended that synfin never saw begin
    STAT_COUNT = 5,
};

struct synfin_event {
    u64 ts_ns;        // bpf_ktime_get_ns(): CLOCK_MONOTONIC
    u64 skaddr;       // the socket (the timewait socket for TIMEWAIT_END)
    u64 since_ns;     // when the socket entered oldstate; 0 when synfin did not see it
    u64 start_ns;     // connect(), the SYN's arrival (passive, observed), or first sight
    u64 aux;          // STATE_CHANGE into CLOSE: the timewait socket taking over, else 0
    u64 cgroup_id;    // the owner's cgroup (v2 id), 0 if unknown
    u32 pid;          // the process this ran in, only in process context, else 0
    u32 owner_pid;    // the last process seen acting on this socket in its own context
    u32 netns;        // network namespace inode number, 0 if unknown
    u32 facts;        // FACT_* so far
    u16 family;       // AF_INET or AF_INET6
    u16 sport;        // host byte order
    u16 dport;
    u8 kind;          // enum synfin_event_kind
    u8 flags;         // EVENT_FLAG_*
    u8 saddr[16];     // IPv6, or IPv4-mapped IPv6 for AF_INET
    u8 daddr[16];
    char comm[16];    // the owner's command name
    u8 oldstate;      // kernel TCP_* values
    u8 newstate;
    u8 detail;        // TIMEWAIT_END and handover: tw substate; resets: the state it hit
    u8 syn_retrans;   // SYN (active) or SYN-ACK (passive) retransmissions
    u16 reason;       // RESET_SENT: enum sk_rst_reason, where the kernel gives one
    u16 reserved;
};

// -- the per-connection stream (PER_CONNECTION=1): one record per socket end --------------------
//
// The probe keeps the steps it would have streamed one by one in the socket's entry, and
// sends them together when that end is over: its full socket destroyed, or the timewait
// socket that carried its end gone. A path longer than PATH_STEPS goes in several records,
// all but the last flagged CONNECTION_FLAG_PART. collector/records/connections.py turns a
// record back into the events it stands for, so the lifecycle engine reads both streams.
#define PATH_STEPS 10
#define CONNECTION_FLAG_PART 0x1  // more of this socket's path follows in a later record

struct path_step {
    u64 ts_ns;
    u32 pid;          // the process it ran in, only in process context, else 0
    u16 reason;       // as synfin_event.reason
    u8 kind;          // enum synfin_event_kind
    u8 oldstate;
    u8 newstate;
    u8 flags;         // EVENT_FLAG_*
    u8 detail;        // as synfin_event.detail
    u8 reserved;
};

struct synfin_connection {
    u64 skaddr;       // the full socket
    u64 timewait;     // the timewait socket that carried the end, 0 if none
    u64 start_ns;
    u64 cgroup_id;
    u32 owner_pid;
    u32 netns;
    u32 facts;        // FACT_*, final
    u16 family;
    u16 sport;
    u16 dport;
    u8 syn_retrans;
    u8 steps;         // entries of path used
    u8 flags;         // CONNECTION_FLAG_*
    u8 reserved;
    u8 saddr[16];
    u8 daddr[16];
    char comm[16];
    struct path_step path[PATH_STEPS];
};

// -- metrics: read at scrape time by collector/exporter/kernel_metrics.py -----------------------------------

// log2 histograms of microseconds: slot 0 counts under 1 us, slot b >= 1 counts
// [2^(b-1), 2^b) us, and the last slot everything above (2^26 us, 67 s).
#define HIST_SLOTS 28
struct hist {
    u64 slots[HIST_SLOTS];
    u64 sum_ns;
};

#define ROLE_ACTIVE 0
#define ROLE_PASSIVE 1
#define N_ROLES 2

#define N_RESET_REASONS 64  // enum sk_rst_reason values above this share the last slot

enum retransmit_kind {
    RETRANSMIT_SYN = 0,
    RETRANSMIT_SYNACK = 1,
    RETRANSMIT_DATA = 2,
    N_RETRANSMIT_KINDS = 3,
};

// What happened to timewait sockets, per family (index * 2 + is_ipv6).
enum timewait_counter {
    TW_HANDOVER_FIN_WAIT2 = 0,      // FIN_WAIT2 -> timewait socket in FIN-WAIT-2
    TW_HANDOVER_TIME_WAIT = 1,      // FIN_WAIT2 -> timewait socket in TIME-WAIT
    TW_HANDOVER_CLOSING = 2,        // CLOSING -> timewait socket in TIME-WAIT
    TW_REARMED = 3,                 // its timer re-armed by the peer's FIN: FIN-WAIT-2 -> TIME-WAIT
    TW_END_EXPIRED = 4,             // TIME-WAIT ran its 2MSL
    TW_END_KILLED = 5,              // TIME-WAIT killed early
    TW_END_FIN_WAIT2_EXPIRED = 6,   // FIN-WAIT-2 timed out in the timewait socket
    TW_END_FIN_WAIT2_KILLED = 7,
    TW_END_UNSEEN_ENTRY = 8,        // ended in TIME-WAIT that synfin saw it enter only now
    TW_END_UNTRACKED = 9,           // lean tier: expired, handed over before synfin started
    N_TIMEWAIT_COUNTERS = 10,
};

enum open_kind {
    OPEN_CONNECTED = 0,  // SYN_SENT -> ESTABLISHED
    OPEN_ACCEPTED = 1,   // LISTEN -> SYN_RECV: a listener's child socket (PassiveOpens)
};

struct open_key {
    u16 kind;
    u16 family;
    u16 port;  // the labelled port (collector/kernel/loader.py allow-list), 0 for "other"
    u16 reserved;
};

// A socket's facts when it went away (masked to what the classification rules read).
struct ending_key {
    u32 facts;
    u16 family;
    u16 port;
};

struct filter_config {
    u32 port_filter;  // 1: stream only events whose sport or dport is in filter_ports
    u16 family;       // 0: any, else AF_INET or AF_INET6
    u16 reserved;
};

#endif
