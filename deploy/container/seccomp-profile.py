#!/usr/bin/env python3
"""Write a seccomp profile for synfin's container: the runtime's own default profile, with
bpf() and perf_event_open() allowed.

Runtime default profiles (containers-common's, moby's, containerd's) allow those two calls
only to a container holding CAP_SYS_ADMIN, and refuse them with EPERM otherwise. synfin needs
them and not CAP_SYS_ADMIN: CAP_BPF and CAP_PERFMON are what the kernel checks. Everything
else the default refuses stays refused.

    deploy/container/seccomp-profile.py [DEFAULT_PROFILE] > synfin-bpf.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_PROFILE = Path("/usr/share/containers/seccomp.json")  # Debian's containers-common
SYNFIN_CALLS = ("bpf", "perf_event_open")
ALLOW = "SCMP_ACT_ALLOW"


def allowing_synfin_calls(profile: dict[str, Any]) -> dict[str, Any]:
    """The profile with synfin's calls taken out of every rule that would refuse them, or
    allow them only with capabilities, and allowed by a rule of their own."""
    rules = []
    for rule in profile.get("syscalls", []):
        names = rule.get("names", [])
        conditional = bool(rule.get("includes") or rule.get("excludes") or rule.get("args"))
        if any(name in SYNFIN_CALLS for name in names) and (rule["action"] != ALLOW or conditional):
            kept = [name for name in names if name not in SYNFIN_CALLS]
            if kept:
                rules.append({**rule, "names": kept})
        else:
            rules.append(rule)
    rules.append({
        "names": list(SYNFIN_CALLS),
        "action": ALLOW,
        "comment": "synfin: loading and attaching its probes (CAP_BPF and CAP_PERFMON decide)",
    })  # fmt: skip
    return {**profile, "syscalls": rules}


def main(arguments: list[str]) -> int:
    source = Path(arguments[0]) if arguments else DEFAULT_PROFILE
    try:
        profile = json.loads(source.read_text())
    except (OSError, ValueError) as error:
        print(
            f"seccomp-profile: cannot read {source}: {error}; give the path of your container "
            "runtime's default seccomp profile (JSON)",
            file=sys.stderr,
        )
        return 2
    if "defaultAction" not in profile:
        print(f"seccomp-profile: {source} is not a seccomp profile (no defaultAction)",
              file=sys.stderr)  # fmt: skip
        return 2
    json.dump(allowing_synfin_calls(profile), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
