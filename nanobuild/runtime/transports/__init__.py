"""Transports: how a call reaches a service that runs in another process.

    Transport.handle_call(target, request)    the one seam (base.py)
     ├── TcpTransport    tcp://host:port   nanobuild's own protocol (tcp.py, frames.py)
     ├── HttpTransport   http://host:port  the HTTP face, for interop (http.py)
     └── LocalTransport  in this process, through the wire form (local.py)

Wiring (``runtime.wiring``) makes one transport per remote address and turns each
remote service's contracts into routes with ``base.remote_route``::

    remote = TcpTransport("tcp://10.0.0.7:9100", secret=settings.secret)
    routes[GetProduct] = remote_route(remote, "catalog", GetProduct, timeout=2.0)
    ...
    await remote.aclose()                                   # at shutdown

The serving side is ``TcpServer`` (tcp.py); the HTTP face serves ``http://`` callers.
This package imports nothing itself: a process loads only the transports it uses.
"""
