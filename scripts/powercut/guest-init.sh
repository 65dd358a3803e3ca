#!/bin/busybox sh
# PID 1 of the power-cut VM (scripts/powercut.sh). Mounts the store disk, starts sluice and waits.
# Everything the driver needs to know is printed on the serial console as "POWERCUT: ..." lines.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# Everything but the disk driver: the store disk stays untouched until the driver says go.
for m in $(cat /etc/powercut-modules); do
    case "$m" in *virtio_blk*) ;; *) insmod "/lib/modules/$m" 2>/dev/null;; esac
done

ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2

param() { for w in $(cat /proc/cmdline); do case "$w" in "$1="*) echo "${w#*=}";; esac; done; }

# The driver saves the machine's state here once and resumes every later power-on from it
# (scripts/powercut/powercut.py, take_snapshot), then types "go" on the serial port.
echo "POWERCUT: WAITING-FOR-GO"
read -r go < /dev/ttyS0
echo "POWERCUT: GO"
insmod /lib/modules/$(grep virtio_blk /etc/powercut-modules)

i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
mkdir -p /store
# ext4 replays its journal here: a damaged filesystem fails this mount.
opts="$(param powercut.mountopts)"
if ! mount -t ext4 -o "${opts:-defaults}" /dev/vda /store; then
    echo "POWERCUT: STORE-MOUNT-FAILED"
    poweroff -f
fi
echo "POWERCUT: STORE-MOUNTED (vda write cache: $(cat /sys/block/vda/queue/write_cache))"

# Mutation check only (powercut.mutate=nosync): make fsync/fdatasync/msync no-ops, so the
# driver can prove that it notices acknowledged messages lost at a power cut.
if [ "$(param powercut.mutate)" = "nosync" ]; then
    export LD_PRELOAD=/opt/sluice/nosync.so
    echo "POWERCUT: MUTATION nosync (fsync/fdatasync are no-ops)"
fi

export LD_LIBRARY_PATH=/opt/sluice/lib
/opt/sluice/sluice run -c /etc/sluice/gateway.conf 2>&1 &
pid=$!
echo "POWERCUT: SLUICE-STARTED pid $pid"
wait $pid
status=$?
echo "POWERCUT: SLUICE-EXITED status $status"
if [ $status -eq 127 ]; then
    ls -l /opt/sluice /lib64; dmesg | grep -i -e initramfs -e "out of memory"; head -3 /proc/meminfo
fi
sync
poweroff -f
