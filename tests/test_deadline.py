"""DeadlineSocket and its reader: what every transport's leftover and stale checks rely on."""

from __future__ import annotations

import socket
import time

import pytest

from opshift._deadline import DeadlineSocket


def _pair() -> tuple[DeadlineSocket, socket.socket]:
    """Our end wrapped with a minute's deadline, and the peer's end."""
    ours, theirs = socket.socketpair()
    return DeadlineSocket(ours, time.monotonic() + 60), theirs


def test_the_reader_counts_every_byte_it_hands_out() -> None:
    """Bytes read by any method count as consumed; what the buffer kept is the leftover."""
    sock, peer = _pair()
    with peer:
        peer.sendall(b"line one\nabcdefghijklmnop")
        reader = sock.makefile("rb")
        assert reader.readline() == b"line one\n"
        assert reader.read(2) == b"ab"
        assert reader.read1(2) == b"cd"
        buffer = bytearray(3)
        assert reader.readinto(buffer) == 3
        assert reader.readinto1(bytearray(2)) == 2
        assert reader.consumed == 9 + 2 + 2 + 3 + 2
        assert sock.leftover() == len(b"line one\nabcdefghijklmnop") - reader.consumed
        reader.close()
    sock.close()


def test_only_binary_reading_is_offered() -> None:
    """makefile() serves http.client's "rb" and nothing else."""
    sock, peer = _pair()
    with peer, pytest.raises(ValueError, match="unsupported mode"):
        sock.makefile("w")
    sock.close()


def test_a_socket_is_quiet_until_its_peer_speaks_or_closes() -> None:
    """Quiet means open with nothing waiting; data, EOF or our own close end it."""
    sock, peer = _pair()
    assert sock.is_quiet()
    peer.sendall(b"x")
    assert not sock.is_quiet()
    sock.close()
    assert not sock.is_quiet()
    quiet, other = _pair()
    other.close()  # EOF waiting
    assert not quiet.is_quiet()
    quiet.close()
    peer.close()
