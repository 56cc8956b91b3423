"""Linux's TCP timer settings (sysctls), as a network starts with them.

Read from /proc/sys/net/ipv4 when this runs on Linux (in a network namespace, that
namespace's values), else Linux's defaults.  Each network has its own copy
(``VirtualNetwork.sysctl``), so a test may shorten one network's timers.
"""

from __future__ import annotations

from .options import kernel_setting

__all__ = ["tcp_sysctls", "TCP_SYSCTL_DEFAULTS"]

TCP_SYSCTL_DEFAULTS = {
    "tcp_syn_retries": 6,
    "tcp_synack_retries": 5,
    "tcp_retries1": 3,
    "tcp_retries2": 15,
    "tcp_keepalive_time": 7200,
    "tcp_keepalive_intvl": 75,
    "tcp_keepalive_probes": 9,
    "tcp_fin_timeout": 60,
}


def tcp_sysctls() -> dict[str, int]:
    """The machine's values now (a fresh dict)."""
    return {name: kernel_setting(f"net/ipv4/{name}", [default])[0]
            for name, default in TCP_SYSCTL_DEFAULTS.items()}
