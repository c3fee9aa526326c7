"""DeadlineSocket and its reader: what every transport's leftover and stale checks rely on."""

from __future__ import annotations

import socket
import time

import pytest

from opshift._deadline import DeadlineSocket, peer_closed, unread


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


def test_the_timeout_is_rearmed_only_when_the_deadline_needs_it() -> None:
    """A reused connection keeps its socket timeout; a nearer deadline shortens it."""
    sock, peer = _pair()
    with peer:
        peer.sendall(b"x")
        sock.raw.settimeout(None)
        sock = DeadlineSocket(sock.raw, time.monotonic() + 60)
        sock.recv_into(bytearray(1))
        first = sock.raw.gettimeout()
        assert first is not None and 59 < first <= 60
        sock.reset(time.monotonic() + 60)  # as far away: the timeout set still ends in time
        peer.sendall(b"y")
        sock.recv_into(bytearray(1))
        assert sock.raw.gettimeout() == first
        sock.reset(time.monotonic() + 5)  # nearer: re-armed
        peer.sendall(b"z")
        sock.recv_into(bytearray(1))
        assert (sock.raw.gettimeout() or 60) <= 5
        sock.reset(time.monotonic() - 1)
        with pytest.raises(socket.timeout):
            sock.recv_into(bytearray(1))
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
