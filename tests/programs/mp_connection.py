"""multiprocessing.connection Listener and Client over AF_INET and AF_UNIX.

An ordinary stdlib program: it prints "ok multiprocessing.connection ..." when every
check passed.
"""

import os
import tempfile
import threading
from multiprocessing.connection import Client, Listener

AUTHKEY = b"secret"
MESSAGES = 200


def serve(listener, clients):
    for _ in range(clients):
        with listener.accept() as connection:
            while True:
                message = connection.recv()
                if message is None:
                    break
                connection.send(("echo", message))
            connection.send_bytes(b"x" * (1 << 20))


def exercise(address, family):
    with Listener(address, family=family, authkey=AUTHKEY) as listener:
        thread = threading.Thread(target=serve, args=(listener, 2))
        thread.start()
        for _ in range(2):
            with Client(listener.address, family=family, authkey=AUTHKEY) as client:
                for i in range(MESSAGES):
                    client.send({"n": i, "data": list(range(i % 50))})
                    assert client.recv() == ("echo", {"n": i, "data": list(range(i % 50))})
                client.send(None)
                assert client.recv_bytes() == b"x" * (1 << 20)
        thread.join()
    # A wrong key is refused by the server's challenge.
    with Listener(address, family=family, authkey=AUTHKEY) as listener:
        def refuse():
            try:
                listener.accept()
            except Exception as exc:
                refusals.append(type(exc).__name__)
        refusals = []
        thread = threading.Thread(target=refuse)
        thread.start()
        try:
            Client(listener.address, family=family, authkey=b"wrong")
        except Exception as exc:
            refusals.append(type(exc).__name__)
        thread.join()
    assert refusals == ["AuthenticationError", "AuthenticationError"], refusals


exercise(("127.0.0.1", 0), "AF_INET")
with tempfile.TemporaryDirectory() as directory:
    exercise(os.path.join(directory, "listener.sock"), "AF_UNIX")
exercise("\0posix-socket-program-" + str(os.getpid()), "AF_UNIX")
print(f"ok multiprocessing.connection: AF_INET, AF_UNIX path and abstract, "
      f"{MESSAGES * 2} messages each, 1 MiB, wrong key refused")
