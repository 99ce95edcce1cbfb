// Feature probe for tp_btf (synfin.kernel.tracing_loader): a BTF-typed program on
// sock:inet_sock_set_state with per-socket storage. bcc compiles it, but bcc 0.26 cannot load
// it as tp_btf (it derives a tracing program's attach type from name prefixes only), so
// tracing_loader loads bcc's bytecode itself. The doctor uses it to ask whether this kernel
// can run the lean probe; the tests use its counters to check what it sees.
//
// The context is the tracepoint's arguments as u64: ctx[0] = struct sock *, ctx[1] = old
// state, ctx[2] = new state. ctx[0] is a BTF-typed (trusted) pointer, so fields are read with
// direct loads the verifier checks against the kernel's BTF: no bpf_probe_read. bcc leaves
// these loads alone (it rewrites dereferences of a kprobe's arguments, not of pointers taken
// from ctx). The offsets come from the running kernel's BTF as -D flags, not from struct
// sock in the installed headers, which may belong to another kernel:
//   SYNFIN_OFF_SK_NET    sock.__sk_common.skc_net    SYNFIN_OFF_NET_INUM  net.ns.inum
//   SYNFIN_OFF_SK_OWNED  sock.sk_lock.owned          SYNFIN_OFF_SK_ERR    sock.sk_err
// No kernel header is included: compiling <net/sock.h> is what makes bcc slow.

#define STATES 16 // TCP states fit 4 bits (the highest, TCP_BOUND_INACTIVE, is 13 in 6.18)
#define TCP_CLOSE 7

// Counter slots (tests/integration/test_tracing_loader.py reads them by these numbers).
// Slot owned * STATES + newstate counts transitions into newstate, split by whether a
// process held the socket's lock at the time (connect, close, listen, backlog processing)
// or not (softirq and timers).
enum {
    COUNT_SOCKETS = 2 * STATES, // sockets seen: storage entries this program created
    COUNT_CLOSED_WITH_ERROR,    // transitions into CLOSE with sk_err set (refused, reset...)
    COUNT_NO_STORAGE,           // bpf_sk_storage_get failed (memory): transition not counted
    COUNTERS,
};

struct sock;

struct socket_seen {
    u32 transitions; // 0 only in an entry just created
    s32 last_err;
};

BPF_SK_STORAGE(seen, struct socket_seen);
// Per CPU: updates from softirq and process context on other CPUs never contend.
BPF_PERCPU_ARRAY(counts, u64, COUNTERS);
// Inode number of the one network namespace counted (tests); 0 counts every namespace.
BPF_ARRAY(netns_filter, u32, 1);

// A direct load of `type` at `offset` bytes into the BTF-typed object at `base`.
#define FIELD(type, base, offset) (*(type *)((char *)(base) + (offset)))

int count_state_change(u64 *ctx)
{
    struct sock *sk = (struct sock *)ctx[0];
    u32 newstate = (u32)ctx[2];
    u32 zero = 0;

    u32 *netns = netns_filter.lookup(&zero);
    if (netns && *netns) {
        // skc_net's pointer, loaded from a trusted pointer, is itself BTF-typed (struct net).
        void *net = FIELD(void *, sk, SYNFIN_OFF_SK_NET);
        if (FIELD(u32, net, SYNFIN_OFF_NET_INUM) != *netns)
            return 0;
    }

    struct socket_seen *entry = seen.sk_storage_get(sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
    if (!entry) {
        counts.increment(COUNT_NO_STORAGE);
        return 0;
    }
    if (entry->transitions++ == 0)
        counts.increment(COUNT_SOCKETS);

    int err = FIELD(int, sk, SYNFIN_OFF_SK_ERR);
    entry->last_err = err;
    if (newstate == TCP_CLOSE && err)
        counts.increment(COUNT_CLOSED_WITH_ERROR);

    u32 owned = FIELD(int, sk, SYNFIN_OFF_SK_OWNED) ? 1 : 0;
    counts.increment(owned * STATES + (newstate & (STATES - 1)));
    return 0;
}
