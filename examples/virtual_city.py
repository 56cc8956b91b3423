"""A small town on one machine: a town hall web server, a weather station, citizens.

An ordinary stdlib program; nothing in it knows about posix-socket.  Run it with

    posix-socket run examples/virtual_city.py

and every socket it opens lives on posix-socket's in-process virtual network: no
port of the machine is taken and it works with no network at all (try it inside
``unshare -n``).  ``python examples/virtual_city.py`` runs it on the kernel instead,
and ``posix-socket run --net host ...`` on the kernel through posix-socket; the story
it prints is the same every time.
"""

import asyncio
import json
import socket
import socketserver
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CITIZENS = ["ada", "grace", "linus"]
FORECAST = {"north": "sunny, 21 C", "harbour": "windy, 17 C", "old town": "rain, 15 C"}
printing = threading.Lock()
registry = {}  # the town hall's book: name -> district


def say(who, text):
    with printing:
        print(f"{who:<15} {text}", flush=True)


class TownHall(BaseHTTPRequestHandler):
    """GET /census lists who registered; POST /register adds a citizen."""

    def do_GET(self):
        say("town hall", f"GET {self.path}")
        self.reply({"citizens": sorted(registry)})

    def do_POST(self):
        citizen = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        registry[citizen["name"]] = citizen["district"]
        say("town hall", f"registered {citizen['name']} in {citizen['district']}")
        self.reply({"welcome": citizen["name"], "number": len(registry)})

    def reply(self, payload):
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # the story is told by say()


class WeatherStation(socketserver.BaseRequestHandler):
    """One datagram in (a district), one datagram out (its forecast)."""

    def handle(self):
        district, sock = self.request[0].decode(), self.request[1]
        say("weather", f"asked about {district}")
        sock.sendto(FORECAST.get(district, "unknown district").encode(), self.client_address)


def citizen(name, district, town_hall, station):
    request = urllib.request.Request(
        f"{town_hall}/register", method="POST",
        data=json.dumps({"name": name, "district": district}).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
    say(name, f"is citizen number {answer['number']}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(district.encode(), station)
        forecast = sock.recv(1024).decode()
    say(name, f"hears the {district} forecast: {forecast}")


async def market(rounds):
    """The market square: an asyncio echo of shouted offers, many stalls at once."""

    async def stall(reader, writer):
        offer = await reader.readline()
        writer.write(b"sold: " + offer)
        await writer.drain()
        writer.close()

    async def shopper(n, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"{n} apples\n".encode())
        answer = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return answer

    server = await asyncio.start_server(stall, "127.0.0.1", 0, backlog=rounds)
    async with server:
        port = server.sockets[0].getsockname()[1]
        answers = await asyncio.gather(*(shopper(n, port) for n in range(rounds)))
    return answers


def main():
    hall = ThreadingHTTPServer(("127.0.0.1", 0), TownHall)
    station = socketserver.UDPServer(("127.0.0.1", 0), WeatherStation)
    for server in (hall, station):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    town_hall = f"http://localhost:{hall.server_port}"
    say("town", "the town hall and the weather station are open")

    for name, district in zip(CITIZENS, FORECAST, strict=True):
        citizen(name, district, town_hall, station.server_address)

    with urllib.request.urlopen(f"{town_hall}/census", timeout=10) as response:
        census = json.load(response)["citizens"]
    say("mayor", f"the census counts {len(census)}: {', '.join(census)}")

    answers = asyncio.run(market(200))
    sold = sum(1 for n, answer in enumerate(answers) if answer == f"sold: {n} apples\n".encode())
    say("market", f"{len(answers)} shoppers at once, {sold} sales")

    for server in (hall, station):
        server.shutdown()
        server.server_close()
    say("town", "closed for the night")


if __name__ == "__main__":
    main()
