"""``free_port``: free, with its gRPC neighbour free and outside the kernel's ephemeral range."""

from __future__ import annotations

import socket

from sentiflow.localstack.ports import GRPC_OFFSET, HOST, ephemeral_range, free_port


def test_a_free_ports_grpc_neighbour_is_free_and_never_one_the_kernel_hands_out() -> None:
    high = ephemeral_range()[1]
    ports = {free_port() for _ in range(50)}
    assert all(port + GRPC_OFFSET > high for port in ports), sorted(ports)
    for port in ports:
        for candidate in (port, port + GRPC_OFFSET):
            with socket.socket() as sock:
                sock.bind((HOST, candidate))  # raises if taken
