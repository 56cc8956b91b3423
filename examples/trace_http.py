"""One HTTP exchange, http.server and urllib, for ``posix-socket run --trace``.

    posix-socket run --trace examples/trace_http.py              # the virtual network
    posix-socket run --net host --trace examples/trace_http.py   # the kernel's
"""

import http.server
import threading
import urllib.request


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from http.server\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Hello)
serving = threading.Thread(target=server.serve_forever, name="server")
serving.start()
host, port = server.server_address
with urllib.request.urlopen(f"http://{host}:{port}/") as response:
    print(response.status, response.read())
server.shutdown()
server.server_close()
serving.join()
