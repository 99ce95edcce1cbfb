// The record probes/tcp_segments.c writes for each captured TCP segment, decoded by
// collector/records/segments.py with the layout Python parses from this file
// (collector/records/abi.py; checked against a C compiler in tests/unit/test_abi.py).
#ifndef SYNFIN_SEGMENTS_H
#define SYNFIN_SEGMENTS_H

#include "synfin_events.h"

// ABI values, not header macros (the headers may belong to another kernel).
#define ETH_P_IP_NUM 0x0800
#define ETH_P_IPV6_NUM 0x86DD
#define PACKET_OUTGOING_NUM 4
#define LOOPBACK_IFINDEX 1  // every network namespace's lo

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_PSH 0x08
#define TCP_FLAG_ACK 0x10

enum segment_stat {
    SEGMENT_STAT_SENT = 0,
    SEGMENT_STAT_LOST = 1,
    SEGMENT_STAT_COUNT = 2,
};

struct synfin_segment {
    u64 ts_ns;          // bpf_ktime_get_ns(): the clock of the state events
    u32 seq;            // host byte order
    u32 ack;
    u32 ifindex;
    u16 family;         // AF_INET or AF_INET6
    u16 sport;
    u16 dport;
    u16 window;
    u16 payload_len;    // bytes of data after the TCP header
    u8 flags;           // TCP_FLAG_*
    u8 outgoing;        // 1: leaving this namespace, 0: arriving
    u8 answers;         // 1: the ACK that answers an earlier SYN or FIN
    u8 reserved[3];
    u8 saddr[16];       // IPv6, or IPv4-mapped IPv6 for AF_INET
    u8 daddr[16];
};

#endif
