// synfin trace: the TCP segments that open and close connections, read from packet bytes.
//
// A socket filter on a packet socket (SOCK_DGRAM, so every packet starts at its network
// header whatever the link type) sees each packet a network namespace sends or receives.
// It returns 0, so nothing is ever queued on that socket: the segments worth drawing are
// copied to a ring buffer instead, and a record that does not fit is counted as lost.
//
// Only packet bytes are read, never a kernel struct: this works the same on every kernel.
//
// Kept: every SYN, FIN and RST, and the one segment that answers each SYN or FIN (the first
// segment from the other end whose ack covers it: the third ACK of the handshake, the ACKs of
// the teardown). With ALL_SEGMENTS=1 every segment of the filtered ports is kept.
//
// collector/kernel/segment_probe.py sets RINGBUF_PAGES, MAX_AWAITED and ALL_SEGMENTS.

#include "synfin_segments.h"

#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 64
#endif
#ifndef MAX_AWAITED
#define MAX_AWAITED 16384
#endif
#ifndef ALL_SEGMENTS
#define ALL_SEGMENTS 0
#endif

BPF_RINGBUF_OUTPUT(segments, RINGBUF_PAGES);
BPF_PERCPU_ARRAY(segment_stats, u64, SEGMENT_STAT_COUNT);
BPF_ARRAY(segment_filter, struct filter_config, 1);
BPF_HASH(segment_ports, u16, u8, MAX_FILTER_PORTS);

// A SYN or FIN waiting for its answer, keyed by the direction the answer travels in.
struct flow_key {
    u8 saddr[16];
    u8 daddr[16];
    u16 sport;
    u16 dport;
    u16 family;
    u16 reserved;
};
// LRU: a flow that never answers (a peer gone silent) must not hold its slot forever.
BPF_TABLE("lru_hash", struct flow_key, u32, awaited, MAX_AWAITED);

static __always_inline void count(u32 index) {
    u64 *value = segment_stats.lookup(&index);
    if (value)
        (*value)++;
}

static __always_inline u32 load_be32(const u8 *bytes) {
    return ((u32)bytes[0] << 24) | ((u32)bytes[1] << 16) | ((u32)bytes[2] << 8) | bytes[3];
}

static __always_inline int wanted_ports(u16 sport, u16 dport, u16 family) {
    u32 zero = 0;
    struct filter_config *config = segment_filter.lookup(&zero);
    if (!config)
        return 1;
    if (config->family && config->family != family)
        return 0;
    if (config->port_filter && !segment_ports.lookup(&sport) && !segment_ports.lookup(&dport))
        return 0;
    return 1;
}

// Returns the TCP header's offset and fills the record's addresses, or -1 if the packet is
// not a first (or only) fragment of TCP over IPv4 or IPv6.
static __always_inline int read_ip(struct __sk_buff *skb, struct synfin_segment *seg,
                                   u32 *ip_payload) {
    if (skb->protocol == bpf_htons(ETH_P_IP_NUM)) {
        u8 ip[20];
        if (bpf_skb_load_bytes(skb, 0, ip, sizeof(ip)) < 0)
            return -1;
        if ((ip[0] >> 4) != 4 || ip[9] != IPPROTO_TCP_NUM)
            return -1;
        if (((ip[6] & 0x1f) << 8 | ip[7]) != 0)
            return -1;  // a later fragment: no TCP header in it
        u32 header = (ip[0] & 0x0f) * 4;
        u32 total = (u32)ip[2] << 8 | ip[3];
        if (header < 20 || total < header)
            return -1;
        seg->family = AF_INET_NUM;
        seg->saddr[10] = seg->saddr[11] = 0xff;
        seg->daddr[10] = seg->daddr[11] = 0xff;
        __builtin_memcpy(&seg->saddr[12], &ip[12], 4);
        __builtin_memcpy(&seg->daddr[12], &ip[16], 4);
        *ip_payload = total - header;
        return header;
    }
    if (skb->protocol == bpf_htons(ETH_P_IPV6_NUM)) {
        u8 ip[40];
        if (bpf_skb_load_bytes(skb, 0, ip, sizeof(ip)) < 0)
            return -1;
        // Extension headers before TCP are rare on connections; such segments are skipped.
        if ((ip[0] >> 4) != 6 || ip[6] != IPPROTO_TCP_NUM)
            return -1;
        seg->family = AF_INET6_NUM;
        __builtin_memcpy(seg->saddr, &ip[8], 16);
        __builtin_memcpy(seg->daddr, &ip[24], 16);
        *ip_payload = (u32)ip[4] << 8 | ip[5];
        return 40;
    }
    return -1;
}

int capture_segment(struct __sk_buff *skb) {
    // Loopback hands each packet to packet sockets twice, leaving and arriving: keep one.
    if (skb->pkt_type == PACKET_OUTGOING_NUM && skb->ifindex == LOOPBACK_IFINDEX)
        return 0;

    struct synfin_segment seg = {};
    u32 ip_payload = 0;
    int offset = read_ip(skb, &seg, &ip_payload);
    if (offset < 0)
        return 0;
    u8 tcp[20];
    if (bpf_skb_load_bytes(skb, offset, tcp, sizeof(tcp)) < 0)
        return 0;
    seg.sport = (u16)tcp[0] << 8 | tcp[1];
    seg.dport = (u16)tcp[2] << 8 | tcp[3];
    if (!wanted_ports(seg.sport, seg.dport, seg.family))
        return 0;
    seg.seq = load_be32(&tcp[4]);
    seg.ack = load_be32(&tcp[8]);
    u32 tcp_header = (tcp[12] >> 4) * 4;
    seg.flags = tcp[13];
    seg.window = (u16)tcp[14] << 8 | tcp[15];
    seg.payload_len = ip_payload > tcp_header ? ip_payload - tcp_header : 0;
    seg.ifindex = skb->ifindex;
    seg.outgoing = skb->pkt_type == PACKET_OUTGOING_NUM;

    int keep = ALL_SEGMENTS || (seg.flags & (TCP_FLAG_SYN | TCP_FLAG_FIN | TCP_FLAG_RST));

    // Is this the answer some earlier SYN or FIN from the other end was waiting for?
    struct flow_key key = {.sport = seg.sport, .dport = seg.dport, .family = seg.family};
    __builtin_memcpy(key.saddr, seg.saddr, 16);
    __builtin_memcpy(key.daddr, seg.daddr, 16);
    if (seg.flags & TCP_FLAG_ACK) {
        u32 *expected = awaited.lookup(&key);
        // Sequence space wraps: "covers" is a signed difference, as the kernel's after().
        if (expected && (s32)(seg.ack - *expected) >= 0) {
            awaited.delete(&key);
            keep = 1;
            seg.answers = 1;
        }
    }
    if (seg.flags & (TCP_FLAG_SYN | TCP_FLAG_FIN)) {
        // SYN and FIN each take one sequence number, after any payload they carry.
        u32 end = seg.seq + seg.payload_len + ((seg.flags & TCP_FLAG_SYN) ? 1 : 0) +
                  ((seg.flags & TCP_FLAG_FIN) ? 1 : 0);
        struct flow_key reverse = {.sport = seg.dport, .dport = seg.sport, .family = seg.family};
        __builtin_memcpy(reverse.saddr, seg.daddr, 16);
        __builtin_memcpy(reverse.daddr, seg.saddr, 16);
        awaited.update(&reverse, &end);
    }
    if (!keep)
        return 0;

    seg.ts_ns = bpf_ktime_get_ns();
    if (segments.ringbuf_output(&seg, sizeof(seg), 0) < 0)
        count(SEGMENT_STAT_LOST);
    else
        count(SEGMENT_STAT_SENT);
    return 0;  // nothing for the packet socket itself: it stays empty
}
