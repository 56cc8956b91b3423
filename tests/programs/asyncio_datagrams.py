"""asyncio datagram endpoints: a UDP server and many clients over IPv4 and IPv6.

An ordinary stdlib program: it prints "ok asyncio datagrams ..." when every check passed.
"""

import asyncio

CLIENTS = 50
MESSAGES = 20


class Server(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport
        self.count = 0

    def datagram_received(self, data, addr):
        self.count += 1
        self.transport.sendto(data.upper(), addr)


class Client(asyncio.DatagramProtocol):
    def __init__(self):
        self.answers = asyncio.Queue()

    def datagram_received(self, data, addr):
        self.answers.put_nowait((data, addr))

    def error_received(self, exc):
        self.answers.put_nowait((exc, None))


async def client(n, server_address):
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        Client, remote_addr=server_address[:2])
    try:
        for i in range(MESSAGES):
            message = f"client {n} message {i} ".encode() * (1 + (n + i) % 30)
            transport.sendto(message)
            data, addr = await asyncio.wait_for(protocol.answers.get(), 30)
            assert data == message.upper(), data
            assert addr[:2] == server_address[:2], addr
    finally:
        transport.close()


async def exercise(host):
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(Server, local_addr=(host, 0))
    address = transport.get_extra_info("sockname")
    try:
        await asyncio.gather(*(client(n, address) for n in range(CLIENTS)))
    finally:
        transport.close()
    return server.count


async def main():
    counts = [await exercise("127.0.0.1"), await exercise("::1")]
    # A datagram to a port nobody holds: Linux answers with ICMP, the endpoint sees
    # ConnectionRefusedError through error_received.
    loop = asyncio.get_running_loop()
    probe, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    free = probe.get_extra_info("sockname")
    probe.close()
    transport, protocol = await loop.create_datagram_endpoint(Client, remote_addr=free)
    transport.sendto(b"anyone?")
    error, _ = await asyncio.wait_for(protocol.answers.get(), 30)
    transport.close()
    return counts, type(error).__name__


counts, refused = asyncio.run(main())
assert counts == [CLIENTS * MESSAGES] * 2, counts
print(f"ok asyncio datagrams: {CLIENTS} endpoints x {MESSAGES} datagrams over IPv4 and "
      f"IPv6, unreachable port -> {refused}")
