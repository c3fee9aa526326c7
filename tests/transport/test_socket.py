"""DeadlineSocket and its reader: what every transport's leftover and stale checks rely on."""

from __future__ import annotations

import socket
import time

import pytest

from opshift.transport._socket import DeadlineSocket, peer_closed, unread


def _pair() -> tuple[DeadlineSocket, socket.socket]:
    """Our end wrapped with a minute's deadline, and the peer's end."""
    ours, theirs = socket.socketpair()
    return DeadlineSocket(ours, time.monotonic() + 60), theirs


def test_the_reader_knows_what_it_fetched_but_did_not_hand_out() -> None:
    """Bytes read by any method count as handed out; what the buffer kept is unread."""
    sock, peer = _pair()
    with peer:
        peer.sendall(b"line one\nabcdefghijklmnop")
        reader = sock.makefile("rb")
        assert reader.readline() == b"line one\n"
        assert reader.read(2) == b"ab"
        assert reader.read1(2) == b"cd"
        assert reader.readinto(bytearray(3)) == 3
        assert reader.readinto1(bytearray(2)) == 2
        handed_out = 9 + 2 + 2 + 3 + 2
        assert reader.tell() == handed_out
        assert unread(reader) == len(b"line one\nabcdefghijklmnop") - handed_out
        assert not peer_closed(reader)
        reader.close()
    sock.close()


def test_a_read_that_meets_the_peers_close_is_noted() -> None:
    """EOF seen by the reader is what tells a header section cut short from a whole one."""
    sock, peer = _pair()
    peer.sendall(b"Content-Len")
    peer.close()
    reader = sock.makefile("rb")
    assert reader.readline() == b"Content-Len"
    assert peer_closed(reader)
    sock.reset(time.monotonic() + 60)
    assert not peer_closed(reader)  # a new exchange starts clean
    reader.close()
    sock.close()


def test_each_exchange_gets_the_time_it_has_left_whatever_the_last_one_left() -> None:
    """A pooled socket's timeout is raised for a farther deadline, lowered for a nearer one."""
    sock, peer = _pair()
    with peer:
        sock.reset(time.monotonic() + 0.05)  # an exchange that ends with little time left
        peer.sendall(b"w")
        sock.recv_into(bytearray(1))
        assert (sock.raw.gettimeout() or 60) <= 0.05
        sock.reset(time.monotonic() + 60)  # the next call on this connection has a minute
        peer.sendall(b"x")
        sock.recv_into(bytearray(1))
        assert 59 < (sock.raw.gettimeout() or 0) <= 60
        sock.reset(time.monotonic() + 5)
        peer.sendall(b"y")
        sock.sendall(b"z")
        assert 4 < (sock.raw.gettimeout() or 0) <= 5
        sock.reset(time.monotonic() - 1)
        with pytest.raises(socket.timeout):
            sock.recv_into(bytearray(1))
    sock.close()
