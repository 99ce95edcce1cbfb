// -- defaults of the -D switches (tcp_states.c lists them) --------------------------------

#ifdef DECLARE_SK_RST_REASON
// The 6.10+ tcp_send_reset tracepoint names this enum, and nothing compiled here includes its
// header (net/rstreason.h), whether or not the kernel headers have it.
enum sk_rst_reason { SK_RST_REASON_NOT_SPECIFIED = 0 };
#endif

// The socket type of tracepoint arguments; its layout is never read from the headers.
struct sock;

#include "synfin_events.h"

#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 256
#endif
#ifndef MAX_SOCKETS
#define MAX_SOCKETS 65536
#endif
#ifndef LEAN_TIER
#define LEAN_TIER 0
#endif
#ifndef TRACK_CONTEXT
#define TRACK_CONTEXT 1
#endif
#ifndef CONTEXT_FROM_LOCK
#define CONTEXT_FROM_LOCK 0
#endif
#ifndef TIMEWAIT_FROM_BUCKET
#define TIMEWAIT_FROM_BUCKET 0
#endif
#ifndef READ_NETNS
#define READ_NETNS 0
#endif
#ifndef READ_SOCK_FIELDS
#define READ_SOCK_FIELDS 0
#endif
#ifndef OBSERVE_TIMERS
#define OBSERVE_TIMERS 0
#endif
#ifndef OBSERVE_RESETS
#define OBSERVE_RESETS 0
#endif
#ifndef STREAM_EVENTS
#define STREAM_EVENTS 1
#endif
#ifndef PER_CONNECTION
#define PER_CONNECTION 0
#endif
#ifndef HAVE_CGROUP_ID
#define HAVE_CGROUP_ID 1  // bpf_get_current_cgroup_id: Linux 4.18
#endif
#ifndef HAVE_PROBE_READ_KERNEL
#define HAVE_PROBE_READ_KERNEL 1  // Linux 5.5; before it, bpf_probe_read reads kernel memory
#endif
#if !HAVE_PROBE_READ_KERNEL
#define bpf_probe_read_kernel bpf_probe_read
#endif
#ifndef MAX_LISTENERS
#define MAX_LISTENERS 4096
#endif
#ifndef SOCKET_SLOTS
#define SOCKET_SLOTS 131072  // the lean tier's table: a power of two, twice MAX_SOCKETS
#endif
#ifndef MAX_HALF_OPEN
#define MAX_HALF_OPEN 65536
#endif
#if LEAN_TIER && STREAM_EVENTS
#error "the lean tier counts only: build it with STREAM_EVENTS=0"
#endif
#if PER_CONNECTION && !STREAM_EVENTS
#error "PER_CONNECTION assembles the stream: build it with STREAM_EVENTS=1"
#endif
#if LEAN_TIER && (TRACK_CONTEXT || OBSERVE_TIMERS)
#error "the lean tier replaces the softirq and timer hooks: TRACK_CONTEXT=0, OBSERVE_TIMERS=0"
#endif
