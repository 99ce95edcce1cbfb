"""The textbook state machine and the lifecycle engine: kernel events in, documented paths out."""
