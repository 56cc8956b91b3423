"""A weather client that retries, over a lossy, slow link and across a partition.

Run it on the network examples/lossy-network.json describes:

    posix-socket run --net-config examples/lossy-network.json examples/retrying_client.py

The file puts the weather station on a host of its own, weather.test, behind a link of
50 ms (+-10 ms) each way, 250 kB/s and 20% loss, with seed 7.  The client is ordinary
stdlib code: a UDP question is asked again after 0.25 s without an answer (at most 5
tries), a download goes over TCP, a connect gives up after 1 s.  Only the partition at
the end needs posix-socket itself (``posix_socket.network()``, the network the program
runs on).  With the same seed the same datagrams are lost, so the UDP part prints the
same tries every run; the times vary a little with the machine.
"""

import hashlib
import socket
import threading
import time

STATION = "weather.test"
FORECAST = {"north": "sunny", "harbour": "windy", "old town": "rain", "hills": "fog",
            "market": "clouds", "river": "drizzle"}
RADAR = bytes(range(256)) * 256  # a 64 KiB picture
TRIES, WAIT = 5, 0.25


def weather_station(udp: socket.socket) -> None:
    """Answers each question with its number and the forecast (UDP)."""
    while True:
        question, client = udp.recvfrom(512)
        number, _, district = question.decode().partition(" ")
        udp.sendto(f"{number} {FORECAST.get(district, '?')}".encode(), client)


def radar_server(listener: socket.socket) -> None:
    """Sends the radar picture to everyone who connects (TCP)."""
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(RADAR)


def ask(udp: socket.socket, number: int, district: str) -> tuple[str, int]:
    """Ask until an answer to this question comes, or give up after TRIES tries."""
    for attempt in range(1, TRIES + 1):
        udp.sendto(f"{number} {district}".encode(), (STATION, 5300))
        deadline = time.monotonic() + WAIT
        while (left := deadline - time.monotonic()) > 0:
            udp.settimeout(left)
            try:
                answer = udp.recv(512).decode()
            except TimeoutError:
                break
            if answer.startswith(f"{number} "):  # late answers to earlier questions
                return answer.partition(" ")[2], attempt
    return "no answer", TRIES


def main() -> None:
    station = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    station.bind((STATION, 5300))  # bound to its address: the socket lives on weather.test
    threading.Thread(target=weather_station, args=(station,), daemon=True).start()
    radar = socket.create_server((STATION, 8080))
    threading.Thread(target=radar_server, args=(radar,), daemon=True).start()

    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for number, district in enumerate(FORECAST):
        forecast, tries = ask(client, number, district)
        print(f"{district:<9} {forecast:<8} after {tries} {'try' if tries == 1 else 'tries'}")

    start = time.monotonic()
    with socket.create_connection((STATION, 8080), timeout=30) as conn:
        received = bytearray()
        while chunk := conn.recv(65536):
            received += chunk
    intact = hashlib.sha256(received).digest() == hashlib.sha256(RADAR).digest()
    print(f"radar     {len(received)} bytes, {'intact' if intact else 'DAMAGED'}, "
          f"in {time.monotonic() - start:.1f} s")

    try:
        import posix_socket
        network = posix_socket.network()
    except (ImportError, LookupError):
        print("partition (needs posix-socket run on the virtual network)")
        return
    network.partition([STATION])
    start = time.monotonic()
    try:
        socket.create_connection((STATION, 8080), timeout=1.0).close()
        print("partition connected?")
    except TimeoutError as exc:
        print(f"partition connect: {exc} after {time.monotonic() - start:.1f} s")
    network.heal()
    start = time.monotonic()
    socket.create_connection((STATION, 8080), timeout=10).close()
    # One round trip (0.1 s), or 1 s more for each SYN the lossy link drops.
    print(f"healed    connected in {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    main()
