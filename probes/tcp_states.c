// synfin: every TCP state change, and the lifecycle of every connection around it.
//
// Counters live here, in per-CPU maps read at scrape time, so they stay exact whatever the
// event rate. Per-event records go to a ring buffer for the live views; a record that cannot be
// reserved is counted, never silently dropped. The probe records what it observes about each
// socket (FACT_* in synfin_events.h); collector/engine/lifecycle.py decides what that means.
//
// Tracepoint arguments are read as bcc lays them out from tracefs. A struct field is read only
// at an offset taken from the running kernel's BTF and passed in as a -D constant: the headers
// bcc compiles against may belong to another kernel version. collector/kernel/state_probe.py and
// features.py set:
//   RINGBUF_PAGES, MAX_SOCKETS, SOCKET_SLOTS, MAX_HALF_OPEN, MAX_LISTENERS   sizes
//   LEAN_TIER         1: hooks are tp_btf programs (tcp_states/tp_btf.c), a socket's entry
//                        lives in a table indexed by its cookie (SOCKET_SLOTS slots, see
//                        sockets.c); counters only (STREAM_EVENTS 0)
//   TRACK_CONTEXT     1: tell process context from softirq (irq:softirq_entry/exit)
//   CONTEXT_FROM_LOCK 1: tell it from the socket's lock instead (SK_LOCK_OWNED_OFF)
//   READ_NETNS        1: SKC_NET_OFF, NET_INUM_OFF give the socket's network namespace
//   READ_SOCK_FIELDS  1: socket fields at BTF offsets: SK_SHUTDOWN_OFF/_SHIFT/_BITS (shutdown
//                        or close), SK_ERR_OFF (why it closed), TCP_SEGS_OUT_OFF (did a SYN
//                        leave), TFO_CHILD_OFF/_SHIFT (a Fast Open child; 6.15+, optional)
//   OBSERVE_TIMERS    1: timewait and request sockets, through their timers (see there)
//   TIMEWAIT_FROM_BUCKET 1: the same facts without the generic timer hooks (without_timers.c)
//   STREAM_EVENTS     0: counters only, no per-event records (`synfin run`, or Linux < 5.8)
//   PER_CONNECTION    1: the stream carries one synfin_connection per socket end instead of a
//                        synfin_event per step (`--per-connection`; stream.c)
//   HAVE_CGROUP_ID, HAVE_PROBE_READ_KERNEL   helpers of newer kernels (collector/kernel/features.py)
//   OBSERVE_RESETS    1: resets and retransmits, with the layout switches RESET_* and
//                        RETRANSMIT_* (resets.c); READ_SKB_NETNS for socketless resets
//
// Split by concept into tcp_states/, each part after the ones it uses. bcc rewrites map
// accesses (`sockets.lookup(...)`) only in the file it compiles: a fragment left to the
// preprocessor would reach clang with its map calls unrewritten. So
// collector/kernel/probe_source.py pastes each fragment in place of its #include before bcc
// sees the text, with #line directives that make compiler errors name the fragment and its line.

#include "tcp_states/config.c"
#include "tcp_states/sockets.c"
#include "tcp_states/context.c"
#include "tcp_states/stream.c"
#include "tcp_states/metrics.c"
#include "tcp_states/listeners.c"
#include "tcp_states/timewait.c"
#include "tcp_states/without_timers.c"
#include "tcp_states/resets.c"
#include "tcp_states/state_change.c"
#include "tcp_states/tp_btf.c"
