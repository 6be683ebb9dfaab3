"""Closed-loop echo client for callgrind_echo.sh: PORT CONNS REQUESTS, 128-byte
messages, one in flight per connection, every reply byte checked."""
import selectors
import socket
import sys

port, conns, total = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
size = 128
msg = bytes((i * 31) & 255 for i in range(size))
sel = selectors.DefaultSelector()
sent = done = 0
for _ in range(conns):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, bytearray())
while sent < min(conns, total):
    list(sel.get_map().values())[sent].fileobj.send(msg)
    sent += 1
while done < total:
    for key, _ in sel.select():
        got = key.data
        data = key.fileobj.recv(65536)
        if not data:
            sys.exit("server closed a connection")
        got += data
        while len(got) >= size:
            if bytes(got[:size]) != msg:
                sys.exit("reply bytes differ from the request")
            del got[:size]
            done += 1
            if sent < total:
                key.fileobj.send(msg)
                sent += 1
