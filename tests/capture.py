"""A packet capture on the loopback interface, in Python: what tcpdump would show.

A raw ``AF_PACKET`` socket bound to ``lo`` (root, or CAP_NET_RAW) sees every
packet on it, in both directions; nothing needs installing. TCP payloads are
kept per flow by sequence number, so a search runs over each byte stream as
the receiver read it, not over packets that may split a word.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections import defaultdict

_ETH_P_ALL = 0x0003
_ETH_HEADER = 14  # lo frames carry an Ethernet header of zeros
_IPV4 = 0x0800

Flow = tuple[str, int, str, int]
"""(source address, source port, destination address, destination port)."""


class LoopbackCapture:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(_ETH_P_ALL))
        with contextlib.suppress(OSError):  # a large buffer: nothing dropped under load
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.1)
        self.segments: dict[Flow, dict[int, bytes]] = defaultdict(dict)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    def __enter__(self) -> LoopbackCapture:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.sock.recv(1 << 17)
            except TimeoutError:
                continue
            except OSError:
                return
            self._take(frame)

    def _take(self, frame: bytes) -> None:
        if len(frame) < _ETH_HEADER + 20 or struct.unpack("!H", frame[12:14])[0] != _IPV4:
            return
        ip = frame[_ETH_HEADER:]
        header = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        if ip[9] != socket.IPPROTO_TCP:
            return
        tcp = ip[header:total]
        sport, dport, seq = struct.unpack("!HHI", tcp[:8])
        payload = tcp[(tcp[12] >> 4) * 4 :]
        if payload:  # each packet is seen twice on lo (out and in): keyed by seq, kept once
            flow = (socket.inet_ntoa(ip[12:16]), sport, socket.inet_ntoa(ip[16:20]), dport)
            self.segments[flow][seq] = payload

    def streams(self, port: int) -> list[bytes]:
        """Every captured byte stream to or from ``port``, each in sequence order."""
        found = []
        for flow, segments in list(self.segments.items()):
            if port in (flow[1], flow[3]):
                found.append(b"".join(segments[s] for s in sorted(segments)))
        return found
