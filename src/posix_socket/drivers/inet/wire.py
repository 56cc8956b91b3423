"""One direction of a TCP connection over an imperfect path: segments in flight.

A connection whose path is perfect never gets here: its bytes go straight into the
peer's receive queue (tcp.py).  Once a path has a condition, each end's outgoing bytes
become a ``Flow``: cut into segments of at most the path's MSS, sent as the path's
bandwidth lets them leave, lost or delivered by the path's draws at each (re)transmission,
acknowledged over the reverse path, and retransmitted by Linux's rules (a tail loss
probe, then the RTO from the smoothed round trip, doubling; fast retransmission of the
holes the receiver reports, as SACK does), no faster than a congestion window lets
them go (slow start from 10 segments; a loss keeps 0.7 of it, as CUBIC).  The
receiver keeps what arrives beyond a hole until the hole is filled, so the reader sees
the bytes whole and in order.  Nothing is ever lost for good: the
connection ends with ETIMEDOUT when retrying lasts too long (tcp_retries2 or
TCP_USER_TIMEOUT), as Linux's.

Every callback runs on the network's scheduler under the network's lock and appends the
sockets whose readiness changed to ``touched``.
"""

from __future__ import annotations

import bisect
import collections
from typing import Any

from . import tcp_timers
from .addresses import is_v4
from .links import Path

__all__ = ["Segment", "Flow", "Handshake", "EndState", "mss_of"]

LOOPBACK_MTU = 65536  # a path without an MTU of its own carries loopback-sized segments
SACK_BLOCKS = 4  # how many held ranges an ACK reports (Linux sends up to 4 SACK blocks)
DUP_THRESHOLD = 3  # segments held beyond a hole before it counts as lost (RFC 6675)
# How far ahead of the link a sender queues segments on a bandwidth-limited path: one
# wake-up sends several (fewer events), and the link stays busy across late wake-ups.
HORIZON = 0.005
INIT_CWND = 10  # Linux's TCP_INIT_CWND, in segments
CUBIC_BETA = 0.7  # what CUBIC (Linux's default) keeps of the window at a loss


def mss_of(path: Path, v4: bool) -> int:
    """The largest payload of a segment on ``path``: its MTU less the IP and TCP
    headers (40 bytes over IPv4, an IPv4-mapped peer of an IPv6 socket included; 60
    over IPv6)."""
    mtu = path.mtu or LOOPBACK_MTU
    return max(mtu - (40 if v4 else 60), 8)


class Segment:
    """A run of the stream (``data``, then a FIN if ``fin``) at offset ``seq``."""

    __slots__ = ("seq", "data", "fin", "end", "first_sent", "sent_at", "retransmitted",
                 "round")

    def __init__(self, seq: int, data: bytes, fin: bool) -> None:
        self.seq = seq
        self.data = data
        self.fin = fin
        self.end = seq + len(data) + (1 if fin else 0)  # a FIN takes one number
        self.first_sent = 0.0
        self.sent_at = 0.0
        self.retransmitted = False
        self.round = -1  # the loss round it was last retransmitted in


class Flow:
    """The bytes ``sender`` sends ``receiver`` while the path is imperfect (or they
    are still in flight).  ``pending`` counts what the sender took and the receiver
    has not acknowledged: it uses the sender's room as unread bytes do."""

    def __init__(self, sender: Any, receiver: Any, path: Path, back: Path) -> None:
        self.sender = sender
        self.receiver = receiver
        self.path = path
        self.back = back
        self.net = sender.net
        self.scheduler = sender.net.scheduler
        self.v4 = sender.remote is None or is_v4(sender.remote.ip)
        self.mss = mss_of(path, self.v4)
        self.pending = 0  # data bytes taken by send() and not acknowledged yet
        self.urgent = -1  # the offset of the last urgent byte written (-1: none)
        self.unsent: collections.deque[bytes] = collections.deque()
        self.unsent_offset = 0  # how much of unsent[0] has been sent
        self.fin_wanted = False
        self.fin_queued = False  # the FIN's segment exists (sent at least once)
        self.fin_acked = False
        self.snd_nxt = 0  # the next offset to send
        self.snd_una = 0  # the first offset not acknowledged
        self.queue: collections.deque[Segment] = collections.deque()  # sent, unacked
        self.by_seq: dict[int, Segment] = {}
        self.rtt = sender.wire_state().rtt  # the connection's: it outlives the flow
        if self.rtt.srtt is None:  # made over a perfect path: its round trip took 0 s
            self.rtt.sample(0.0)
        self.rto = self.rtt.rto
        self.retransmits = 0  # RTO expiries since the last progress (icsk_retransmits)
        self.retrans_stamp: float | None = None  # first send of what is retransmitted
        self.round = 0  # bumped by each RTO: every hole may be retransmitted again
        self.recovery_point: int | None = None  # after an RTO: resend up to here
        # Congestion window, in segments: slow start from INIT_CWND, one more per window
        # above ssthresh; a loss keeps CUBIC_BETA of it, an RTO drops it to one.
        # What the connection's last flow left, shrunk as Linux's tcp_cwnd_restart
        # does after an idle time longer than the RTO (halved per RTO, down to 10).
        state = sender.wire_state()
        self.cwnd, self.ssthresh = state.cwnd, state.ssthresh
        idle = self.scheduler.now() - state.last_sent
        restart = min(INIT_CWND, self.cwnd)
        while idle > self.rtt.rto and self.cwnd > restart:
            idle -= self.rtt.rto
            self.cwnd //= 2
        self.cwnd = max(self.cwnd, restart)
        self.cwnd_acked = 0
        self.recovery_until: int | None = None  # in fast recovery until snd_una is here
        self.timer: Any = None  # the retransmission timer (or the loss probe's)
        self.probing = False  # the timer is the tail loss probe's
        self.pump_timer: Any = None  # the next departure while the link is busy
        self.last_arrival = 0.0  # a stream's bytes never overtake each other
        self.last_ack_arrival = 0.0
        self.dead = False
        # receiver's side
        self.rcv_nxt = 0
        self.held: dict[int, Segment] = {}  # arrived beyond a hole, by seq
        self.held_order: list[int] = []  # their seqs, sorted
        # what happened (tests and the bench read these)
        self.transmissions = 0
        self.retransmissions = sender.wire_state().retransmissions  # offsets resent

    # -- the sender --------------------------------------------------------------------

    def write(self, data: bytes, touched: list, urgent: bool = False) -> None:
        self.unsent.append(data)
        self.pending += len(data)
        if urgent:  # MSG_OOB: the last byte written is urgent (tcp_mark_urg)
            self.urgent = self.snd_una + self.pending - 1
        self.pump(touched)

    def finish(self, touched: list) -> None:
        """Queue the FIN behind everything written."""
        if not self.fin_wanted:
            self.fin_wanted = True
            self.pump(touched)

    def pump(self, touched: list | None = None) -> None:
        """Send what waits, as fast as the link's bandwidth lets it leave."""
        if self.dead or self.pump_timer is not None:
            return
        now = self.scheduler.now()
        path = self.path
        unsent = self.unsent
        self.mss = mss_of(path, self.v4)  # the MTU may have changed
        while unsent or (self.fin_wanted and not self.fin_queued):
            if len(self.queue) >= self.cwnd:
                break  # the congestion window is full: the next ACK sends more
            if path.conditions.bandwidth is not None and path.busy_until > now + HORIZON:
                # The link is busy: come back a little before it drains, so that it
                # never idles for a late wake-up (segments leave back to back).
                self.pump_timer = self.scheduler.call_at(path.busy_until - HORIZON,
                                                         self._pump_later)
                return
            data = self._take(self.mss)
            fin = self.fin_wanted and not unsent
            self.fin_queued = fin
            segment = Segment(self.snd_nxt, data, fin)
            self.snd_nxt = segment.end
            segment.first_sent = now
            self.queue.append(segment)
            self.by_seq[segment.seq] = segment
            self._transmit(segment, now)
        if self.timer is None and self.queue:
            self._arm_first(now)

    def _pump_later(self, touched: list) -> None:
        self.pump_timer = None
        self.pump(touched)

    def _take(self, size: int) -> bytes:
        """The next ``size`` bytes of what waits.  The first chunk is read from
        ``unsent_offset`` on, never cut down by slicing: a large send is copied once,
        a segment at a time."""
        unsent = self.unsent
        parts: list[bytes] = []
        want = size
        while unsent and want > 0:
            chunk, offset = unsent[0], self.unsent_offset
            left = len(chunk) - offset
            if left <= want:
                parts.append(chunk[offset:] if offset else chunk)
                unsent.popleft()
                self.unsent_offset = 0
                want -= left
            else:
                parts.append(chunk[offset:offset + want])
                self.unsent_offset = offset + want
                want = 0
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _transmit(self, segment: Segment, now: float) -> None:
        """One (re)transmission: the path decides, now, whether and when it arrives."""
        segment.sent_at = now
        self.transmissions += 1
        path = self.path
        tap = self.net.tap
        if tap is not None:
            tap.wire_segment(self, segment)
        leaves = path.depart(len(segment.data), now)
        if path.lost():
            return
        conditions = path.conditions
        if conditions.reorder and path.chance(conditions.reorder):
            arrival = leaves  # netem's reorder: this one goes at once, past the others
        else:
            arrival = max(leaves + path.delay(), self.last_arrival)
            self.last_arrival = arrival
        self.scheduler.call_at(arrival, self._arrive, segment, now)
        if conditions.duplicate and path.chance(conditions.duplicate):
            self.scheduler.call_at(arrival, self._arrive, segment, now)  # acked again

    def _retransmit(self, segment: Segment, now: float) -> None:
        if self.retrans_stamp is None:  # the first retransmission's time, as Linux
            self.retrans_stamp = now
        segment.retransmitted = True
        segment.round = self.round
        self.retransmissions.append(segment.seq)
        self._transmit(segment, now)

    def _arm(self, now: float, delay: float, probe: bool = False) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.probing = probe
        self.timer = self.scheduler.call_at(now + delay, self._expired)

    def _arm_first(self, now: float) -> None:
        """New data in flight (or an ACK that advanced): outside loss recovery Linux
        first arms a tail loss probe (tcp_schedule_loss_probe: two round trips, plus
        RTO_MIN when one segment is out for a delayed ACK), never later than the RTO."""
        if self.recovery_point is not None or self.retransmits:
            self._arm(now, self.rto)
            return
        srtt = self.rtt.srtt
        if srtt is None:
            timeout = tcp_timers.TIMEOUT_INIT
        else:
            timeout = 2 * srtt + (tcp_timers.RTO_MIN if len(self.queue) == 1 else 0.002)
        self._arm(now, min(timeout, self.rto), probe=True)

    def _user_timeout(self) -> float:
        return self.sender.user_timeout()

    def _expired(self, touched: list) -> None:
        """tcp_retransmit_timer: give up (ETIMEDOUT), or resend the first segment
        not acknowledged and back off."""
        self.timer = None
        if self.dead or not self.queue:
            return
        now = self.scheduler.now()
        if self.probing:  # the tail loss probe: the last segment again, then the RTO
            tail = self.queue[-1]
            tail.retransmitted = True
            self.retransmissions.append(tail.seq)
            self._transmit(tail, now)
            self._arm(now, self.rto)
            return
        sender = self.sender
        user_timeout = self._user_timeout()
        if tcp_timers.timed_out(now, self.retransmits, self.retrans_stamp,
                                self.net.sysctl["tcp_retries2"], user_timeout,
                                tcp_timers.RTO_MIN):
            sender.timed_out(touched)
            return
        self.round += 1
        self.recovery_point = self.snd_nxt
        self.ssthresh = max(int(self.cwnd * CUBIC_BETA), 2)  # tcp_enter_loss
        self.cwnd = 1
        self.cwnd_acked = 0
        self.recovery_until = None
        self.retransmits += 1
        self._retransmit(self.queue[0], now)
        self.rto = min(self.rto * 2, tcp_timers.RTO_MAX)
        self._arm(now, tcp_timers.clamp_to_user_timeout(self.rto, now, self.retrans_stamp,
                                                         user_timeout))

    def _acked(self, touched: list, ack: int, blocks: tuple, echo: float) -> None:
        """An ACK arrived: drop what it covers, take an RTT sample from the echoed
        send time of the segment that brought it (Linux's timestamps: a sample even
        after a retransmission, never inflated by a hole), resend the holes the
        receiver reports."""
        if self.dead:
            return
        now = self.scheduler.now()
        sender = self.sender
        sender.heard_from_peer(now)
        newly = 0
        if ack > self.snd_una:
            queue = self.queue
            while queue and queue[0].end <= ack:
                segment = queue.popleft()
                del self.by_seq[segment.seq]
                self.pending -= len(segment.data)
                if segment.fin:
                    self.fin_acked = True
                newly += 1
            self.snd_una = ack
            self._grow(newly)
            if self.recovery_until is not None and ack >= self.recovery_until:
                self.recovery_until = None
            self.rtt.sample(now - echo)
            self.rto = self.rtt.rto
            self.retransmits = 0
            self.retrans_stamp = None
            if self.recovery_point is not None and ack >= self.recovery_point:
                self.recovery_point = None
            if queue:
                self._arm_first(now)
            elif self.timer is not None:
                self.timer.cancel()
                self.timer = None
            touched.append(sender)  # room again
        self._resend_holes(now, ack, blocks, newly)
        if self.idle():
            sender.flow_idle(self, touched)
        elif newly and (self.unsent or (self.fin_wanted and not self.fin_queued)):
            self.pump(touched)  # the window moved: more may go

    def _grow(self, acked: int) -> None:
        """tcp_cong_avoid: slow start below ssthresh, then one segment per window."""
        if self.recovery_until is not None:
            return
        if self.cwnd < self.ssthresh:
            self.cwnd = min(self.cwnd + acked, self.ssthresh)
            return
        self.cwnd_acked += acked
        if self.cwnd_acked >= self.cwnd:
            self.cwnd_acked -= self.cwnd
            self.cwnd += 1

    def _resend_holes(self, now: float, ack: int, blocks: tuple, newly: int) -> None:
        if self.recovery_point is not None and newly:
            # After an RTO everything up to the recovery point counts as lost (Linux's
            # tcp_enter_loss): resend the head's hole, twice the acknowledged count per
            # ACK (slow start), skipping what the receiver reported it holds.
            end = blocks[0][0] if blocks else self.recovery_point
            self._resend_range(now, ack, min(end, self.recovery_point), 2 * newly + 1)
        if not blocks:
            return
        held_beyond = [0] * len(blocks)
        total = 0
        for index in range(len(blocks) - 1, -1, -1):
            total += blocks[index][1] - blocks[index][0]
            held_beyond[index] = total
        start = ack
        for index, (low, high) in enumerate(blocks):
            lost = held_beyond[index] >= DUP_THRESHOLD * self.mss or (
                held_beyond[index] and self.snd_nxt <= high)
            if lost and self._resend_range(now, start, low, None) and (
                    self.recovery_until is None and self.recovery_point is None):
                # a loss outside recovery: fast recovery, the window cut (CUBIC)
                self.recovery_until = self.snd_nxt
                self.ssthresh = self.cwnd = max(int(self.cwnd * CUBIC_BETA), 2)
            start = high

    def _resend_range(self, now: float, low: int, high: int, limit: int | None) -> int:
        """Resend the segments from ``low`` to ``high`` not resent in this round (at
        most ``limit``); how many went."""
        seq, sent = low, 0
        by_seq = self.by_seq
        while seq < high and (limit is None or limit > 0):
            segment = by_seq.get(seq)
            if segment is None:
                break
            if segment.round < self.round:
                self._retransmit(segment, now)
                sent += 1
                if limit is not None:
                    limit -= 1
            seq = segment.end
        return sent

    def keep_window(self, state: EndState) -> None:
        """The flow ends: the connection keeps its window for the next one."""
        state.cwnd, state.ssthresh = self.cwnd, self.ssthresh
        state.last_sent = self.scheduler.now()

    def idle(self) -> bool:
        """Nothing waits to be sent or acknowledged, nothing is held out of order."""
        return not self.queue and not self.unsent and not self.held and (
            not self.fin_wanted or self.fin_acked)

    def kill(self) -> None:
        """The connection is over: nothing more is sent, nothing in flight counts."""
        self.dead = True
        for timer in (self.timer, self.pump_timer):
            if timer is not None:
                timer.cancel()
        self.timer = self.pump_timer = None
        self.unsent.clear()
        self.unsent_offset = 0
        self.queue.clear()
        self.by_seq.clear()
        self.held.clear()
        self.held_order.clear()
        self.pending = 0

    # -- the receiver ------------------------------------------------------------------

    def _arrive(self, touched: list, segment: Segment, sent_at: float) -> None:
        if self.dead:
            return
        receiver = self.receiver
        seq, end = segment.seq, segment.end
        if end <= self.rcv_nxt:
            self._ack(touched, sent_at)  # a duplicate: acknowledge again
            return
        if not receiver.accepts_from(self.sender, bool(segment.data)):
            receiver.refuse(self.sender, self, touched)  # new data for a closed end: RST
            return
        if seq > self.rcv_nxt:
            if seq not in self.held:
                self.held[seq] = segment
                bisect.insort(self.held_order, seq)
            self._ack(touched, sent_at)
            return
        self._deliver(segment, touched)
        held, order = self.held, self.held_order
        while order and order[0] <= self.rcv_nxt and not self.dead:
            waiting = held.pop(order.pop(0))
            if waiting.end > self.rcv_nxt:
                self._deliver(waiting, touched)
        if not self.dead:
            self._ack(touched, sent_at)

    def _deliver(self, segment: Segment, touched: list) -> None:
        offset = self.rcv_nxt - segment.seq
        data = segment.data[offset:] if offset else segment.data
        self.rcv_nxt = segment.end
        receiver = self.receiver
        receiver.heard_from_peer(self.scheduler.now())
        if data:
            start = self.rcv_nxt - len(data) - (1 if segment.fin else 0)
            urgent = self.urgent - start
            receiver.take_data(data, self.sender, touched,
                               urgent if 0 <= urgent < len(data) else -1)
        if segment.fin and not self.dead:
            receiver.take_fin(self.sender, touched)

    def _ack(self, touched: list, echo: float) -> None:
        """Acknowledge over the reverse path, which may lose or delay the ACK as any
        packet (ACKs never overtake each other: a later one says at least as much)."""
        back = self.back
        if self.net.tap is not None:
            self.net.tap.wire_ack(self, self.rcv_nxt)
        if back.lost():
            return
        blocks = self._blocks()
        now = self.scheduler.now()
        arrival = max(now + back.delay(), self.last_ack_arrival)
        self.last_ack_arrival = arrival
        self.scheduler.call_at(arrival, self._acked, self.rcv_nxt, blocks, echo)

    def _blocks(self) -> tuple:
        """The first ranges held beyond holes, lowest first (SACK blocks)."""
        order = self.held_order
        if not order:
            return ()
        held = self.held
        blocks: list[tuple[int, int]] = []
        low = high = None
        for seq in order:
            segment = held[seq]
            if high is not None and seq <= high:
                high = max(high, segment.end)
                continue
            if low is not None:
                blocks.append((low, high))
                if len(blocks) == SACK_BLOCKS:
                    return tuple(blocks)
            low, high = seq, segment.end
        blocks.append((low, high))
        return tuple(blocks)


class Handshake:
    """A connect under way over an imperfect path (SYN_SENT): where the SYN goes and
    its retransmission state (Linux's icsk_retransmits, icsk_rto, retrans_stamp)."""

    __slots__ = ("ip", "port", "v4", "host", "started", "sent_at", "rto", "retransmits",
                 "timer")

    def __init__(self, ip: Any, port: int, v4: bool, host: Any, now: float) -> None:
        self.ip = ip
        self.port = port
        self.v4 = v4
        self.host = host  # the host the SYN goes to
        self.started = now  # the first SYN (retrans_stamp)
        self.sent_at = now
        self.rto = tcp_timers.TIMEOUT_INIT
        self.retransmits = 0
        self.timer: Any = None


class EndState:
    """What one end of a connection keeps for the wire and its timers: the round trip
    estimate, the handshake under way, the keepalive timer and its probes.  Made only
    for a connection that needs one (an idle perfect connection carries none)."""

    __slots__ = ("rtt", "handshake", "keepalive", "probes_out", "last_heard",
                 "retransmissions", "cwnd", "ssthresh", "last_sent")

    def __init__(self) -> None:
        self.rtt = tcp_timers.RttEstimator()
        self.handshake: Handshake | None = None
        self.keepalive: Any = None  # the keepalive timer
        self.probes_out = 0  # keepalive probes unanswered
        self.last_heard = 0.0  # when the peer last sent anything (keepalive's idle)
        self.retransmissions: list[int] = []  # offsets resent, in order (tests read it)
        self.cwnd = INIT_CWND  # the congestion window a new flow starts from
        self.ssthresh = 1 << 30
        self.last_sent = 0.0

    def stop(self) -> None:
        """No more SYNs or probes."""
        handshake, self.handshake = self.handshake, None
        if handshake is not None and handshake.timer is not None:
            handshake.timer.cancel()
        if self.keepalive is not None:
            self.keepalive.cancel()
            self.keepalive = None
