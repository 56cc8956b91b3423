"""xmlrpc.server's SimpleXMLRPCServer called through xmlrpc.client.ServerProxy.

An ordinary stdlib program: it prints "ok xmlrpc ..." when every check passed.
"""

import threading
import xmlrpc.client
import xmlrpc.server


class QuietHandler(xmlrpc.server.SimpleXMLRPCRequestHandler):
    def log_message(self, format, *args):
        pass


server = xmlrpc.server.SimpleXMLRPCServer(("127.0.0.1", 0), requestHandler=QuietHandler,
                                          allow_none=True, logRequests=False)
server.register_introspection_functions()
server.register_multicall_functions()
server.register_function(lambda a, b: a + b, "add")
server.register_function(lambda data: data.data[::-1], "reverse")
server.register_function(lambda: 1 / 0, "divide_by_zero")
threading.Thread(target=server.serve_forever, daemon=True).start()
host, port = server.server_address

with xmlrpc.client.ServerProxy(f"http://{host}:{port}/", allow_none=True) as proxy:
    assert proxy.add(2, 3) == 5
    assert proxy.add("posix-", "socket") == "posix-socket"
    blob = bytes(range(256)) * 1024
    assert proxy.reverse(xmlrpc.client.Binary(blob)).data == blob[::-1]
    assert sorted(proxy.system.listMethods())[:3] == ["add", "divide_by_zero", "reverse"]
    try:
        proxy.divide_by_zero()
    except xmlrpc.client.Fault as fault:
        assert "ZeroDivisionError" in fault.faultString
    else:
        raise AssertionError("no fault")
    multi = xmlrpc.client.MultiCall(proxy)
    for i in range(10):
        multi.add(i, i)
    assert list(multi()) == [2 * i for i in range(10)]
    total = sum(proxy.add(i, 1) for i in range(100))

server.shutdown()
server.server_close()
print(f"ok xmlrpc: 100 calls (sum {total}), 256 KiB binary, a fault, a multicall")
