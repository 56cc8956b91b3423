"""Linux's TCP timer arithmetic, as numbers (no sockets here).

The virtual TCP retransmits and gives up by these rules, so that a program sees the
kernel's times: the retransmission timeout (RTO) from the smoothed round trip
(tcp_rtt_estimator, __tcp_set_rto), its backoff, and when retrying ends with ETIMEDOUT
(tcp_write_timeout: a number of SYN retransmissions, else the time a number of doubling
retransmissions would take, tcp_model_timeout; TCP_USER_TIMEOUT instead when set).
"""

from __future__ import annotations

__all__ = ["RTO_MIN", "RTO_MAX", "TIMEOUT_INIT", "RttEstimator", "model_timeout",
           "syn_expired", "timed_out", "clamp_to_user_timeout"]

RTO_MIN = 0.2  # TCP_RTO_MIN (tcp_rto_min_us's default)
RTO_MAX = 120.0  # TCP_RTO_MAX
TIMEOUT_INIT = 1.0  # TCP_TIMEOUT_INIT: the SYN's RTO, and the RTO before any sample


class RttEstimator:
    """Smoothed round trip and its variation (Jacobson/Karels, as tcp_rtt_estimator
    keeps them), and the RTO they give: srtt + max(4 * mdev, RTO_MIN), as Linux's
    rttvar never goes below tcp_rto_min.  Before the first sample: TIMEOUT_INIT."""

    __slots__ = ("srtt", "mdev", "rto")

    def __init__(self) -> None:
        self.srtt: float | None = None
        self.mdev = 0.0
        self.rto = TIMEOUT_INIT

    def sample(self, rtt: float) -> None:
        rtt = max(rtt, 0.0)
        if self.srtt is None:
            self.srtt = rtt
            self.mdev = rtt / 2  # tcp_rtt_estimator: the first RTO is about 3 * rtt
        else:
            error = rtt - self.srtt
            self.srtt += error / 8
            self.mdev += (abs(error) - self.mdev) / 4
        self.rto = min(self.srtt + max(4 * self.mdev, RTO_MIN), RTO_MAX)


def model_timeout(boundary: int, rto_base: float) -> float:
    """tcp_model_timeout: how long ``boundary`` retransmissions take when the RTO
    starts at ``rto_base`` and doubles up to RTO_MAX (tcp_retries2=15: 924.6 s)."""
    threshold = (int(RTO_MAX / rto_base)).bit_length() - 1  # ilog2
    if boundary <= threshold:
        return ((2 << boundary) - 1) * rto_base
    return ((2 << threshold) - 1) * rto_base + (boundary - threshold) * RTO_MAX


def syn_expired(retransmits: int, syn_retries: int, linear: int) -> bool:
    """tcp_write_timeout in SYN_SENT: the count of SYN retransmissions is used up
    (tcp_syn_retries or TCP_SYNCNT, plus tcp_syn_linear_timeouts)."""
    return retransmits >= syn_retries + linear


def timed_out(now: float, retransmits: int, retrans_stamp: float | None, boundary: int,
              user_timeout: float, rto_base: float) -> bool:
    """retransmits_timed_out: retransmitting since ``retrans_stamp`` lasted the time
    ``boundary`` retransmissions would take (or TCP_USER_TIMEOUT when set)."""
    if not retransmits or retrans_stamp is None:
        return False
    limit = user_timeout if user_timeout else model_timeout(boundary, rto_base)
    return now - retrans_stamp >= limit - 1e-9


def clamp_to_user_timeout(rto: float, now: float, retrans_stamp: float | None,
                          user_timeout: float) -> float:
    """tcp_clamp_rto_to_user_timeout: the next retransmission comes no later than
    the user timeout's end (at once when it is over)."""
    if not user_timeout or retrans_stamp is None:
        return rto
    remaining = user_timeout - (now - retrans_stamp)
    if remaining <= 0:
        return 0.001  # Linux: one jiffy
    return min(rto, remaining)
