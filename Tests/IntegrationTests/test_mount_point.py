"""`mount_point` per listener (issue 16 item 4): prepended to what the listener's clients publish,
subscribe to and leave as a will, removed from what they receive. The same script runs against
Debian's mosquitto (SLUICE_TEST_BROKER=mosquitto)."""

import pytest

import mqttraw
from conftest import free_port, uid
from mqttraw import SUBACK, read_publishes


def mounted_pair(start_broker, raw, version):
    """A broker with a second listener mounted at site7/; a plain subscriber to '#' on the first
    and a client on the mounted one subscribed to 'a/#'."""
    mounted_port = free_port()
    b = start_broker(f"listener {mounted_port} 127.0.0.1\nmount_point site7/\n")
    plain = raw(version, target=b)
    plain.connect(uid("plain"))
    plain.send(mqttraw.subscribe([("#", 0)], version=version))
    plain.expect(SUBACK)
    mounted = mqttraw.RawClient(b.host, mounted_port, version=version)
    assert mounted.connect(uid("mounted")).reason == 0
    mounted.send(mqttraw.subscribe([("a/#", 0)], version=version))
    mounted.expect(SUBACK)
    other = raw(version, target=b)
    other.connect(uid("other"))
    return plain, mounted, other


@pytest.mark.parametrize("version", [4, 5])
def test_mount_point_prefixes_publishes_and_subscriptions(start_broker, raw, version):
    plain, mounted, other = mounted_pair(start_broker, raw, version)
    try:
        mounted.send(mqttraw.publish("a/b", b"from-mounted", version=version))
        assert [(p.topic, p.payload) for p in read_publishes(plain, 2.0, expect=1)] == [("site7/a/b", b"from-mounted")]
        assert [p.payload for p in read_publishes(mounted, 2.0, expect=1)] == [b"from-mounted"]
        other.send(mqttraw.publish("a/x", b"outside", version=version))
        other.send(mqttraw.publish("site7/a/c", b"inside", version=version))
        assert [p.payload for p in read_publishes(mounted, 2.0, expect=1)] == [b"inside"]
    finally:
        mounted.close()


@pytest.mark.sluice_only(reason="Mosquitto 2.0.11 leaves the mount point on delivered topics (its issue "
                         "#2244, fixed in 2.0.12; 1.6 stripped it): the documented behaviour is tested")
@pytest.mark.parametrize("version", [4, 5])
def test_mount_point_is_removed_from_delivered_topics(start_broker, raw, version):
    plain, mounted, other = mounted_pair(start_broker, raw, version)
    try:
        mounted.send(mqttraw.publish("a/b", b"own", version=version))
        other.send(mqttraw.publish("site7/a/c", b"inside", version=version))
        got = read_publishes(mounted, 2.0, expect=2)
        assert sorted((p.topic, p.payload) for p in got) == [("a/b", b"own"), ("a/c", b"inside")]
    finally:
        mounted.close()


def test_mount_point_applies_to_the_will(start_broker, raw):
    mounted_port = free_port()
    b = start_broker(f"listener {mounted_port} 127.0.0.1\nmount_point site7/\n")
    watcher = raw(4, target=b)
    watcher.connect(uid("watch"))
    watcher.send(mqttraw.subscribe([("site7/#", 1)]))
    watcher.expect(SUBACK)
    dying = mqttraw.RawClient(b.host, mounted_port)
    assert dying.connect(uid("dying"), will=("status", b"gone", 1, False)).reason == 0
    dying.abort()
    got = read_publishes(watcher, 3.0, expect=1, ack=True)
    assert [(p.topic, p.payload) for p in got] == [("site7/status", b"gone")]
