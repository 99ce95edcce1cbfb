// Feature probe for `synfin doctor`: can this kernel attach fentry programs? Where it can,
// synfin may time SYN-RCVD and TIME-WAIT's end directly; where it cannot (kernel lockdown,
// no BTF trampolines), those steps are inferred instead. The program does nothing.
KFUNC_PROBE(tcp_v4_connect)
{
    return 0;
}
