// -- listeners: a child socket is first owned by whoever listened --------------------------
//
// Owners are shown only by the stream.

#if STREAM_EVENTS

struct listener_key {
    u32 netns;
    u32 port;
};

struct owner {
    u64 cgroup_id;
    u32 pid;
    char comm[16];
};

BPF_HASH(listeners, struct listener_key, struct owner, MAX_LISTENERS);

static __always_inline void track_listener(int oldstate, int newstate, struct sock_entry *entry)
{
    struct listener_key key = {.netns = entry->netns, .port = entry->sport};
    if (newstate == TCP_LISTEN_NUM && entry->owner_pid) {
        struct owner owner = {.cgroup_id = entry->cgroup_id, .pid = entry->owner_pid};
        __builtin_memcpy(owner.comm, entry->comm, sizeof(owner.comm));
        listeners.update(&key, &owner);
    } else if (oldstate == TCP_LISTEN_NUM && newstate == TCP_CLOSE_NUM) {
        listeners.delete(&key);
    }
}

static __always_inline void inherit_listener_owner(struct sock_entry *child)
{
    struct listener_key key = {.netns = child->netns, .port = child->sport};
    struct owner *owner = listeners.lookup(&key);
    if (!owner || child->owner_pid)
        return;
    child->owner_pid = owner->pid;
    child->cgroup_id = owner->cgroup_id;
    __builtin_memcpy(child->comm, owner->comm, sizeof(child->comm));
}
#endif
