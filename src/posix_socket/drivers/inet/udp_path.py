"""What an imperfect path does to one UDP datagram, the way Linux's netem does it.

``carry`` decides a datagram's fate from the path's random stream and schedules its
arrival (a perfect path never comes here: the caller delivers at once):

* A blocked path (a partition, a link that is down) swallows it silently; so does a
  path cut while the datagram is in flight (the arrival callbacks in ``udp.py`` look
  at ``path.blocked`` again: a cut wire loses what is on it).
* Duplication and loss in netem's order (``netem_enqueue``): a duplicate draw, then
  one loss draw for the datagram; a copy survives when it was duplicated (the clone
  then meets loss again on its own) or not lost.
* A datagram larger than the path's MTU leaves as IP fragments (what Linux does with
  IP_MTU_DISCOVER at its default, IP_PMTUDISC_WANT, when it knows the route's MTU);
  each fragment meets loss on its own, so one lost fragment loses the datagram, and
  it arrives with its last fragment.  Duplicated fragments never make a second
  datagram: reassembly drops an exact duplicate fragment (``IPFRAG_DUP``), so
  fragmented datagrams get no duplicate draw.
* Bandwidth is a queue per direction: each packet leaves after those queued before
  it (``Path.depart``); while ``QUEUE_LIMIT`` packets wait to leave, a new one is
  dropped and counted (``path.drops``, the link's ``drops``, the network's
  ``link_drops``).  netem's
  limit (default 1000 packets) also counts the packets held for their latency; here
  latency is the wire's and holds no queue room, as a device queue in front of a
  delaying wire would (1000 is also Linux's default txqueuelen).
* Latency plus a jitter drawn uniformly in +-jitter (netem's default distribution),
  so with jitter datagrams may overtake each other, as under netem; except behind a
  bandwidth, where netem lets each packet leave only after the one before it (its
  rate accounting starts from the last packet's time to send), so there a datagram
  never arrives before the one paced before it.  With
  probability ``reorder`` a datagram skips the latency and so overtakes those sent
  before it (netem's reorder with its default gap of 1, ``tc`` sets it); unlike
  netem it still takes its turn in the bandwidth queue.

A copy whose arrival time has come already (no latency, no queue) is delivered at
once, as a zero-delay qdisc hands a packet on in the sender's context; the others go
to the network's scheduler.  ``deliver(touched, *args)`` runs at arrival under the
network's lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .links import Path

__all__ = ["carry", "packet_sizes", "packets_on", "QUEUE_LIMIT", "IPV6_MIN_MTU", "LOOPBACK_MTU"]

QUEUE_LIMIT = 1000  # packets waiting to leave one direction (netem's default limit)
IPV4_HEADER, IPV6_HEADER, FRAGMENT_HEADER, UDP_HEADER = 20, 40, 8, 8
IPV6_MIN_MTU = 1280  # a device with a smaller MTU carries no IPv6 (addrconf)
LOOPBACK_MTU = 65536  # Linux's lo: the MTU of a path without one of its own


def packet_sizes(length: int, v6: bool, mtu: int | None) -> list[int]:
    """The sizes of the IP packets a datagram of ``length`` payload bytes becomes on
    a path of ``mtu``: one, or Linux's fragments (each but the last carrying a
    multiple of 8 bytes of the UDP header and payload, IPv6's with a fragment
    header)."""
    header = IPV6_HEADER if v6 else IPV4_HEADER
    data = length + UDP_HEADER
    if mtu is None or data + header <= mtu:
        return [data + header]
    header += FRAGMENT_HEADER if v6 else 0
    per = (mtu - header) & ~7
    sizes = []
    while data > per:
        sizes.append(per + header)
        data -= per
    sizes.append(data + header)
    return sizes


def packets_on(path: Path, length: int, v6: bool) -> list[int]:
    """``packet_sizes`` on ``path``: its MTU, else lo's (what a path without an MTU
    of its own stands for)."""
    return packet_sizes(length, v6, path.mtu or LOOPBACK_MTU)


def carry(net: Any, path: Path, packets: list[int], touched: list,
          deliver: Callable[..., Any], *args: Any) -> None:
    """Send one datagram of IP packets of ``packets`` bytes over ``path``; call
    ``deliver(touched, *args)`` when each copy that survives arrives."""
    if path.blocked:
        return
    now = net.scheduler.now()
    if len(packets) == 1:
        size = packets[0]
        copies = 2 if path.chance(path.conditions.duplicate) else 1
        if path.lost():
            copies -= 1
        for copy in range(copies):
            if copy and path.lost():  # the clone goes through netem once more
                break
            departure = _enqueue(net, path, size, now)
            if departure is not None:
                _schedule(net, _arrival(path, departure), now, touched, deliver, args)
        return
    arrival = now
    lost = False
    for size in packets:  # every fragment draws, so its fate never shifts the others'
        if path.lost():
            lost = True
            continue
        departure = _enqueue(net, path, size, now)
        if departure is None:
            lost = True
            continue
        arrival = max(arrival, _arrival(path, departure))
    if not lost:
        _schedule(net, arrival, now, touched, deliver, args)


def _enqueue(net: Any, path: Path, size: int, now: float) -> float | None:
    """When a packet of ``size`` bytes has left (``now`` without a bandwidth), or
    None when the queue is full: dropped and counted."""
    if path.conditions.bandwidth is None:
        return now
    queue = path.queue
    while queue and queue[0] <= now:
        queue.popleft()
    if len(queue) >= QUEUE_LIMIT:
        path.drops += 1
        net.link_drops += 1
        if path.link is not None:
            path.link.count_drop()
        return None
    departure = path.depart(size, now)
    queue.append(departure)
    return departure


def _arrival(path: Path, departure: float) -> float:
    """When a packet that has left at ``departure`` arrives: after the latency, or at
    once when reordered (it skips the latency, overtaking those in flight); behind a
    bandwidth never before the packet paced before it."""
    if path.chance(path.conditions.reorder):
        return departure
    arrival = departure + path.delay()
    if path.conditions.bandwidth is not None:
        if arrival < path.last_arrival:
            arrival = path.last_arrival
        path.last_arrival = arrival
    return arrival


def _schedule(net: Any, arrival: float, now: float, touched: list,
              deliver: Callable[..., Any], args: tuple) -> None:
    if arrival <= now:
        deliver(touched, *args)
    else:
        net.scheduler.call_at(arrival, deliver, *args)
