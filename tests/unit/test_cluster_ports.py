"""scripts/cluster.py picks node ports whose cluster buses (+10000) clash with nothing."""

from scripts.cluster import BUS_OFFSET, fits_beside, free_cluster_ports


def test_a_port_on_another_nodes_bus_does_not_fit() -> None:
    # CI once picked 33683 and 43683: the first node's bus is the second node's port.
    assert not fits_beside(43683, [33683])
    assert not fits_beside(33683, [43683])


def test_a_port_taken_twice_or_past_the_last_bus_port_does_not_fit() -> None:
    assert not fits_beside(30000, [30000])
    assert not fits_beside(65536 - BUS_OFFSET, [])
    assert fits_beside(65535 - BUS_OFFSET, [])
    assert fits_beside(30001, [30000, 40002])


def test_free_cluster_ports_are_apart_from_each_others_buses() -> None:
    ports = free_cluster_ports(6)
    nodes_and_buses = ports + [p + BUS_OFFSET for p in ports]
    assert len(set(nodes_and_buses)) == 12
