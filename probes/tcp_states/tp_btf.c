// -- the lean tier's hooks: tp_btf programs ------------------------------------------------
//
// A tp_btf program gets the socket as a BTF-typed pointer: it reads fields with plain loads and
// asks the kernel for the socket's cookie, which indexes the lean tier's table of entries (and
// it skips building the trace record an ordinary tracepoint program reads). Every hook that
// reads or writes a socket's entry is one. Each takes `u64 *ctx`, where ctx[i] is
// the tracepoint's i-th argument as the kernel passes it (not the record tracefs describes),
// and the function's name after `tp_btf__` names its tracepoint: collector/kernel/state_probe.py
// loads and attaches each through collector/kernel/tracing_loader.py (bcc 0.26 cannot).

#if LEAN_TIER
// inet_sock_set_state(const struct sock *sk, const int oldstate, const int newstate)
int tp_btf__inet_sock_set_state(u64 *ctx)
{
    struct sock *sk = (struct sock *)ctx[0];
    // The tracepoint is shared with SCTP and MPTCP.
    if (socket_protocol(sk) != IPPROTO_TCP_NUM)
        return 0;
    struct state_change change = {
        .oldstate = (int)ctx[1],
        .newstate = (int)ctx[2],
        .family = socket_family(sk),
        .sport = socket_sport((u64)sk),
        .dport = socket_dport(sk),
    };
    return on_state_change(sk, &change);
}

// tcp_destroy_sock(struct sock *sk)
int tp_btf__tcp_destroy_sock(u64 *ctx)
{
    return on_socket_destroyed((struct sock *)ctx[0]);
}

#if OBSERVE_RESETS
// tcp_send_reset(const struct sock *sk, const struct sk_buff *skb[, enum sk_rst_reason reason])
// sk is NULL for a reset without a socket, and may be a timewait or request socket.
int tp_btf__tcp_send_reset(u64 *ctx)
{
    struct sock *sk = (struct sock *)ctx[0];
    u16 reason = 0;
#if RESET_HAS_REASON
    reason = (u16)ctx[2];
#endif
    on_reset_sent(sk, ctx[1], sk ? socket_state(sk) : 0, reason, 0, 0);
    return 0;
}

// tcp_receive_reset(struct sock *sk)
int tp_btf__tcp_receive_reset(u64 *ctx)
{
    struct sock *sk = (struct sock *)ctx[0];
    struct sock_entry *entry = find_entry(sk);
    on_reset_received(sk, entry, entry ? entry->state : 0);
    return 0;
}

// tcp_retransmit_skb(const struct sock *sk, const struct sk_buff *skb[, int err])
int tp_btf__tcp_retransmit_skb(u64 *ctx)
{
    struct sock *sk = (struct sock *)ctx[0];
#if RETRANSMIT_HAS_ERR
    if (!retransmission_counted((int)ctx[2]))
        return 0;
#endif
    on_retransmit(sk, socket_state(sk), retransmitted_segments(ctx[1]));
    return 0;
}

// tcp_retransmit_synack(const struct sock *sk, const struct request_sock *req): sk is the
// listener, or a Fast Open child resending its own SYN-ACK.
int tp_btf__tcp_retransmit_synack(u64 *ctx)
{
    struct sock *sk = (struct sock *)ctx[0];
    u32 index = RETRANSMIT_SYNACK * N_STATE_SLOTS + TCP_NEW_SYN_RECV_NUM;
    add_to(retransmits.lookup(&index));
    struct sock_entry *child = find_entry(sk);
    if (child && child->state == TCP_SYN_RECV_NUM) {
        child->facts |= FACT_SYN_RETRANSMITTED;
        if (child->syn_retrans < 255)
            child->syn_retrans += 1;
    }
    return 0;
}
#endif
#endif
