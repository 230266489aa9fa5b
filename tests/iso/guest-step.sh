#!/bin/sh
# Runs inside the iso.install_vm guest (Debian 12, systemd, no network), from
# the test disk mounted at /mnt/t, as root, output on ttyS0.  /mnt/t/STEP says
# which boot this is:
#   install  apt-get install the .deb on the fresh system; check the daemons,
#            database, TLS, users, directories, that a process in hostd's
#            cgroup outlives `systemctl restart atrium-hostd`; then make data
#            (an image, a pool, a conffile edit) for the next boot to find
#   upgrade  (after a reboot) the daemons came back by themselves; install the
#            next version over it; everything made above survived; purge keeps
#            the site's data
# Every check prints "ATRIUM-CHECK ok|fail NAME"; the host side fails the
# test on any fail or on a missing "ATRIUM-TEST-STEP-EXIT 0".
T=/mnt/t
S=/var/lib/atrium-test
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin
step=$(cat $T/STEP)
fails=0
exec 3>&1 # the serial console, also from inside check()
mkdir -p $S

check() { # check NAME CMD...: run CMD, report, show its output when it fails
    name=$1
    shift
    if "$@" >/tmp/check.out 2>&1; then
        echo "ATRIUM-CHECK ok $name"
    else
        echo "ATRIUM-CHECK fail $name"
        tail -n 25 /tmp/check.out | sed 's/^/    | /'
        fails=$((fails + 1))
    fi
}
phase() { echo "ATRIUM-PHASE $1 $(cut -d' ' -f1 /proc/uptime)"; }

daemons="atrium-hostd atrium-poold atrium-broker"
[ -e /usr/lib/systemd/system/atrium-displayd.service ] && daemons="$daemons atrium-displayd"

apt_install() { # apt_install LOG DEB: install (the guest has no network: every
    # dependency must already be there); the log is shown
    apt-get install -y -o Dpkg::Options::=--force-confold "$2" >"$1" 2>&1
    rc=$?
    tr '\r' '\n' <"$1" | grep -v '^(Reading database' | sed 's/^/    apt| /' >&3
    return $rc
}

daemons_up() {
    for d in $daemons; do
        check "$d is active" systemctl is-active -q "$d"
    done
    check "atrium.target is active" systemctl is-active -q atrium.target
    check "atriumctl db status: up to date" sh -c 'atriumctl db status && atriumctl db status | grep -q "(up to date)"'
    check "broker /healthz over HTTPS answers 200" curl -fsSk --max-time 20 https://localhost:8443/healthz
    check "hostd registered this host" sh -c \
        '[ "$(runuser -u postgres -- psql -d atrium -Atc "SELECT count(*) FROM hosts WHERE heartbeat_at > now() - interval '"'1 minute'"'")" -ge 1 ]'
}

# api_login USER PASSWORD: log in through the broker's API; the session's
# cookie goes to /tmp/api.jar.  Succeeds only on 200 with a CSRF token.
api_login() {
    printf '{"username":"%s","password":"%s"}' "$1" "$2" >/tmp/login.json
    code=$(curl -sSk --max-time 20 -o /tmp/login.out -w '%{http_code}' -c /tmp/api.jar \
        -H 'Content-Type: application/json' --data-binary @/tmp/login.json https://localhost:8443/api/v1/login)
    cat /tmp/login.out
    [ "$code" = 200 ] && grep -q csrf_token /tmp/login.out
}
# The admin sees this host in GET /api/v1/hosts.
api_sees_host() {
    curl -fsSk --max-time 20 -b /tmp/api.jar https://localhost:8443/api/v1/hosts >/tmp/hosts.json &&
        grep -q "\"$(hostname)\"" /tmp/hosts.json
}

show_logs() {
    [ $fails -eq 0 ] && return
    echo "---- journal of the atrium units"
    journalctl --no-pager -o short-monotonic -u 'atrium*' -u postgresql@15-main | tail -n 80
}

case $step in
install)
    phase install-start
    check "atrium is not installed yet" sh -c '! dpkg-query -W atrium 2>/dev/null'
    check "apt-get install atrium.deb (offline)" apt_install /tmp/apt-install.log $T/atrium.deb
    phase installed
    check "dpkg says atrium is installed" sh -c 'dpkg-query -W -f="\${db:Status-Status}" atrium | grep -qx installed'
    daemons_up
    for u in $daemons atrium.target; do
        check "$u is enabled" systemctl is-enabled -q "$u"
    done
    check "system user atrium exists" id atrium
    check "broker runs as atrium" sh -c '[ "$(ps -o user= -C atrium-broker | head -1)" = atrium ]'
    check "poold runs as atrium" sh -c '[ "$(ps -o user= -C atrium-poold | head -1)" = atrium ]'
    check "hostd runs as root" sh -c '[ "$(ps -o user= -C atrium-hostd | head -1)" = root ]'
    check "/run/atrium and /var/lib/atrium/{images,overlays} exist" \
        test -d /run/atrium -a -d /var/lib/atrium/images -a -d /var/lib/atrium/overlays
    check "TLS cert + key generated, key 0640 root:atrium" sh -c \
        'openssl x509 -in /etc/atrium/tls/cert.pem -noout && [ "$(stat -c %a:%U:%G /etc/atrium/tls/key.pem)" = 640:root:atrium ]'
    check "database atrium owned by role atrium" sh -c \
        '[ "$(runuser -u postgres -- psql -Atc "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '"'atrium'"'")" = atrium ]'
    if [ -e /etc/atrium/initial-admin-password ]; then
        check "first admin password file is 0600" sh -c '[ "$(stat -c %a /etc/atrium/initial-admin-password)" = 600 ]'
        check "first admin logs in through the API" api_login admin "$(head -n1 /etc/atrium/initial-admin-password)"
        check "the admin sees this host in /api/v1/hosts" api_sees_host
    else
        check "first admin reported PENDING by postinst (no atriumctl user command)" \
            grep -q 'PENDING: first admin' /tmp/apt-install.log
    fi
    # KillMode=process: a process in hostd's cgroup (as a QEMU would be)
    # survives a restart of hostd.  Under cgroup v2 hostd hands the cpu and
    # memory controllers to its VMs' slice, so the unit's own cgroup may hold
    # no process and hostd lives in its leaf "hostd": use the cgroup hostd's
    # main process is in.
    sleep 100000 &
    child=$!
    old_main=$(systemctl show -p MainPID --value atrium-hostd)
    cg=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/$old_main/cgroup)
    echo "hostd's cgroup: $cg"
    check "test process moved into hostd's cgroup" sh -c "echo $child >$cg/cgroup.procs"
    check "systemctl restart atrium-hostd" systemctl restart atrium-hostd
    check "hostd has a new main PID" sh -c "[ \"\$(systemctl show -p MainPID --value atrium-hostd)\" != $old_main ]"
    check "the process in hostd's cgroup survived the restart, still in that cgroup" \
        sh -c "kill -0 $child && grep -qx $child $cg/cgroup.procs"
    check "hostd is active again" systemctl is-active -q atrium-hostd
    kill $child 2>/dev/null
    # VM console sockets are for group atrium (displayd), not the world.
    check "/run/atrium/vms is 2750 root:atrium" sh -c '[ "$(stat -c %a:%U:%G /run/atrium/vms)" = 2750:root:atrium ]'
    check "hostd's unit has UMask 0007" sh -c '[ "$(systemctl show -p UMask --value atrium-hostd)" = 0007 ]'
    # Host shutdown powers VMs off (atrium-vm-shutdown.service); restarts never do.
    check "atrium-vm-shutdown.service is active" systemctl is-active -q atrium-vm-shutdown
    check "atrium-vm-shutdown.service refuses a manual stop" sh -c '! systemctl stop atrium-vm-shutdown'
    check "atrium-vm-shutdown stops after hostd (Before=)" sh -c \
        'systemctl show -p Before --value atrium-vm-shutdown | grep -qw atrium-hostd.service'
    # A QEMU that ignores the power button (no guest), set up like a VM of
    # hostd: its runtime dir, pid file, QMP socket, in hostd's cgroup.  At the
    # power-off that ends this boot it gets system_powerdown, then quit after
    # [hostd] stop_timeout; the host side reads that on the serial log.
    check "stop_timeout = 5 for the shutdown test" \
        sed -i 's/^#stop_timeout = 60$/stop_timeout = 5/' /etc/atrium/atrium.conf
    mkdir -p /run/atrium/vms/999999
    check "a stand-in VM (QEMU, no guest) runs" qemu-system-x86_64 -machine none -nodefaults -display none \
        -qmp unix:/run/atrium/vms/999999/qmp.sock,server=on,wait=off \
        -pidfile /run/atrium/vms/999999/qemu.pid -daemonize
    check "the stand-in VM is in hostd's cgroup" sh -c "cat /run/atrium/vms/999999/qemu.pid >$cg/cgroup.procs"
    check "the stand-in VM's directory is group atrium (setgid)" sh -c '[ "$(stat -c %G /run/atrium/vms/999999)" = atrium ]'
    check "a person to keep across the upgrade" sh -c \
        'echo "Keep-Me-42" | atriumctl user create pkguser --role user --password-stdin'
    check "that person logs in through the API" api_login pkguser Keep-Me-42
    phase checked
    # Data for the upgrade to keep.
    check "atriumctl image import (data to keep)" atriumctl image import $T/tiny.qcow2 --name pkgtest
    check "atriumctl pool create (data to keep)" \
        atriumctl pool create pkgpool --image pkgtest --min 0 --spare 0 --max 2
    check "edit a conffile (admin's change to keep)" \
        sed -i 's/^#level = info$/level = debug/' /etc/atrium/atrium.conf
    check "the edit is there" grep -qx 'level = debug' /etc/atrium/atrium.conf
    openssl x509 -in /etc/atrium/tls/cert.pem -noout -fingerprint -sha256 >$S/cert.fp
    runuser -u postgres -- psql -d atrium -Atc "SELECT id, name FROM hosts ORDER BY id" >$S/hosts
    ls /var/lib/atrium/images >$S/images
    check "an image file exists under /var/lib/atrium/images" test -s $S/images
    phase install-end
    ;;
upgrade)
    phase upgrade-start
    old=$(dpkg-query -W -f='${Version}' atrium)
    new=$(cat $T/NEW_VERSION)
    echo "    upgrading $old -> $new"
    # After the reboot: the units are enabled, so they came up by themselves.
    daemons_up
    check "apt-get install the next version over it" apt_install /tmp/apt-upgrade.log $T/atrium-upgrade.deb
    phase upgraded
    check "dpkg says version $new" sh -c "[ \"\$(dpkg-query -W -f='\${Version}' atrium)\" = '$new' ]"
    check "upgrade created no database (kept the site)" sh -c '! grep -q "created database" /tmp/apt-upgrade.log'
    daemons_up
    check "image pkgtest survived" sh -c 'atriumctl image list pkgtest | grep -q pkgtest'
    check "pool pkgpool survived" atriumctl pool show pkgpool
    check "image files survived" sh -c "[ \"\$(ls /var/lib/atrium/images)\" = \"\$(cat $S/images)\" ]"
    check "hosts rows unchanged" sh -c \
        "[ \"\$(runuser -u postgres -- psql -d atrium -Atc 'SELECT id, name FROM hosts ORDER BY id')\" = \"\$(cat $S/hosts)\" ]"
    check "admin's conffile edit kept" grep -qx 'level = debug' /etc/atrium/atrium.conf
    check "user pkguser survived: logs in through the API with the same password" api_login pkguser Keep-Me-42
    if [ -e /etc/atrium/initial-admin-password ]; then
        check "first admin survived: logs in through the API" api_login admin "$(head -n1 /etc/atrium/initial-admin-password)"
        check "upgrade made no second admin password" sh -c '! grep -q "first admin: user" /tmp/apt-upgrade.log'
    fi
    check "atrium-vm-shutdown.service active after the upgrade (started, never restarted)" \
        systemctl is-active -q atrium-vm-shutdown
    check "TLS certificate kept" sh -c \
        "[ \"\$(openssl x509 -in /etc/atrium/tls/cert.pem -noout -fingerprint -sha256)\" = \"\$(cat $S/cert.fp)\" ]"
    # Purge: the configuration goes, the site's data stays.
    apt-get purge -y atrium >/tmp/apt-purge.log 2>&1
    rc=$?
    tr '\r' '\n' </tmp/apt-purge.log | grep -v '^(Reading database' | sed 's/^/    apt| /' 
    check "apt-get purge atrium" [ $rc -eq 0 ]
    check "purge removed /etc/atrium/atrium.conf" test ! -e /etc/atrium/atrium.conf
    check "purge removed the generated TLS pair" test ! -e /etc/atrium/tls/key.pem
    check "no atrium daemon runs after purge" sh -c '! pgrep -x "atrium-(hostd|poold|broker|displayd)"'
    check "purge kept database atrium" sh -c \
        '[ "$(runuser -u postgres -- psql -Atc "SELECT count(*) FROM pg_database WHERE datname = '"'atrium'"'")" = 1 ]'
    check "purge kept the image rows" sh -c \
        '[ "$(runuser -u postgres -- psql -d atrium -Atc "SELECT count(*) FROM images WHERE name = '"'pkgtest'"'")" = 1 ]'
    check "purge kept the image files" sh -c "[ \"\$(ls /var/lib/atrium/images)\" = \"\$(cat $S/images)\" ]"
    check "purge said what it kept" grep -q 'Site data was KEPT' /tmp/apt-purge.log
    phase upgrade-end
    ;;
*)
    echo "ATRIUM-CHECK fail unknown step '$step'"
    fails=1
    ;;
esac
show_logs
echo "ATRIUM-TEST-RESULT step=$step failed_checks=$fails"
[ $fails -eq 0 ]
