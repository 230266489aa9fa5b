/* Specification of the QEMU command line a VM definition becomes. */
#include "hv.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static struct hv_vm_paths paths;

static struct hv_vm_def base_def(void)
{
    return (struct hv_vm_def){
        .id = 42,
        .name = "desk-1",
        .vcpus = 2,
        .memory_mb = 512,
        .disk_path = "/var/lib/atrium/overlays/42.qcow2",
        .boot = HV_BOOT_DISK,
        .nic = HV_NIC_USER,
        .accel = HV_ACCEL_TCG,
    };
}

static int setup(void **state)
{
    (void)state;
    return hv_vm_paths_init("/run/atrium", 42, &paths);
}

/* Value following the first occurrence of @opt, or NULL. */
static const char *value_of(char **argv, const char *opt)
{
    for (size_t i = 0; argv[i]; i++)
        if (strcmp(argv[i], opt) == 0)
            return argv[i + 1];
    return NULL;
}

static bool has_arg(char **argv, const char *arg)
{
    for (size_t i = 0; argv[i]; i++)
        if (strcmp(argv[i], arg) == 0)
            return true;
    return false;
}

/* True when some value of option @opt contains @needle. */
static bool opt_contains(char **argv, const char *opt, const char *needle)
{
    for (size_t i = 0; argv[i]; i++)
        if (strcmp(argv[i], opt) == 0 && argv[i + 1] && strstr(argv[i + 1], needle))
            return true;
    return false;
}

static char **build(const struct hv_vm_def *def)
{
    char **argv = NULL;
    assert_int_equal(hv_qemu_argv_new(def, &paths, "/usr/bin/qemu-system-x86_64", -1, &argv), 0);
    assert_non_null(argv);
    return argv;
}

/*
 * Consoles are never on the network: no argument may ask QEMU for a TCP or
 * UDP listener, whatever the definition.  Each pattern is how some QEMU
 * option would open one.
 */
static void assert_no_network_listener(char **argv)
{
    static const char *const forbidden[] = {
        "tcp:",     "udp:",  "telnet",  "websocket", "hostfwd", "guestfwd",  "port=",
        "tls-port", "host=", "0.0.0.0", "::",        "listen",  "-incoming", "-gdb",
    };
    for (size_t i = 0; argv[i]; i++) {
        for (size_t k = 0; k < sizeof(forbidden) / sizeof(forbidden[0]); k++) {
            if (strstr(argv[i], forbidden[k])) {
                print_error("argument '%s' contains '%s'\n", argv[i], forbidden[k]);
                fail();
            }
        }
        assert_string_not_equal(argv[i], "-s"); /* gdbstub on tcp::1234 */
    }
    const char *vnc = value_of(argv, "-vnc");
    assert_non_null(vnc);
    assert_memory_equal(vnc, "unix:", 5);
    assert_true(opt_contains(argv, "-spice", "unix=on"));
    assert_true(opt_contains(argv, "-chardev", "socket,id=qmp"));
}

static void test_command_line_has_no_tcp_listener(void **state)
{
    (void)state;
    struct hv_vm_def def = base_def();
    char **argv = build(&def);
    assert_no_network_listener(argv);
    hv_argv_free(argv);

    def.nic = HV_NIC_BRIDGE;
    def.bridge = "br0";
    def.tap = "atr1n0";
    def.boot = HV_BOOT_KERNEL;
    def.kernel = "/k";
    def.accel = HV_ACCEL_KVM;
    argv = build(&def);
    assert_no_network_listener(argv);
    hv_argv_free(argv);
}

/* -incoming is the one TCP listener, and only for a VM that waits for a
 * migration; a value that could smuggle options, or comes with -loadvm, is refused. */
static void test_incoming_migration_listens_only_when_asked(void **state)
{
    (void)state;
    struct hv_vm_def def = base_def();
    char **argv = build(&def);
    assert_false(has_arg(argv, "-incoming"));
    hv_argv_free(argv);

    def.incoming = "tcp:10.213.7.12:40001";
    argv = build(&def);
    assert_string_equal(value_of(argv, "-incoming"), "tcp:10.213.7.12:40001");
    hv_argv_free(argv);

    static const char *const bad[] = {"unix:/tmp/x", "tcp:1.2.3.4:5,server=on", "tcp:a b:1",
                                      "exec:cat"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        def.incoming = bad[i];
        char **out = NULL;
        assert_int_equal(hv_qemu_argv_new(&def, &paths, "/usr/bin/qemu-system-x86_64", -1, &out),
                         -EINVAL);
        assert_null(out);
    }
    def.incoming = "tcp:10.213.7.12:40001";
    def.loadvm = "snap1";
    char **out = NULL;
    assert_int_equal(hv_qemu_argv_new(&def, &paths, "/usr/bin/qemu-system-x86_64", -1, &out),
                     -EINVAL);
}

/* A template writes its RAM through to a file; a clone maps it privately and
 * waits for its device state; both carry the identity port on a pipe. */
static void test_instant_template_and_clone_differ_only_in_ram_sharing_and_incoming(void **state)
{
    (void)state;
    struct hv_vm_def def = base_def();
    def.ram_path = "/var/lib/atrium/templates/7/ram";
    def.ram_shared = true;
    def.identity_port = true;
    char **tpl = build(&def);
    assert_string_equal(value_of(tpl, "-machine"), "q35,memory-backend=ram");
    assert_true(opt_contains(tpl, "-object", "memory-backend-file,id=ram,size="));
    assert_true(opt_contains(tpl, "-object", "mem-path=/var/lib/atrium/templates/7/ram,share=on"));
    assert_true(opt_contains(tpl, "-chardev", "pipe,id=identity,path=/run/atrium/vms/42/identity"));
    assert_true(opt_contains(tpl, "-device", "name=org.atrium.identity"));
    assert_false(has_arg(tpl, "-incoming"));

    def.ram_shared = false;
    def.incoming_defer = true;
    char **clone = build(&def);
    assert_true(opt_contains(clone, "-object", "share=off"));
    assert_string_equal(value_of(clone, "-incoming"), "defer");
    /* Same devices in the same order, or the saved state would not load. */
    size_t nt = 0, nc = 0;
    while (tpl[nt])
        nt++;
    while (clone[nc])
        nc++;
    assert_int_equal(nc, nt + 2);
    for (size_t i = 0, k = 0; i < nt; i++, k++) {
        if (strcmp(clone[k], "-incoming") == 0)
            k += 2;
        if (strstr(tpl[i], "share=on"))
            continue;
        assert_string_equal(tpl[i], clone[k]);
    }
    hv_argv_free(tpl);
    hv_argv_free(clone);

    /* "defer" with another incoming, or a RAM path that would inject options. */
    char **out = NULL;
    def.incoming = "tcp:10.0.0.1:4000";
    assert_int_equal(hv_qemu_argv_new(&def, &paths, "/usr/bin/qemu-system-x86_64", -1, &out),
                     -EINVAL);
    def.incoming = NULL;
    def.ram_path = "/x,share=on";
    assert_int_equal(hv_qemu_argv_new(&def, &paths, "/usr/bin/qemu-system-x86_64", -1, &out),
                     -EINVAL);
    assert_null(out);
}

static void test_consoles_and_monitor_live_in_the_vm_runtime_dir(void **state)
{
    (void)state;
    struct hv_vm_def def = base_def();
    char **argv = build(&def);
    assert_string_equal(argv[0], "/usr/bin/qemu-system-x86_64");
    assert_string_equal(value_of(argv, "-vnc"), "unix:/run/atrium/vms/42/vnc.sock");
    assert_string_equal(value_of(argv, "-spice"),
                        "unix=on,addr=/run/atrium/vms/42/spice.sock");
    assert_true(
        opt_contains(argv, "-chardev", "socket,id=qmp,path=/run/atrium/vms/42/qmp.sock,server=on"));
    assert_string_equal(value_of(argv, "-mon"), "chardev=qmp,mode=control");
    /* displayd's own monitor; SPICE keeps ticketing on until it sets a password */
    assert_true(opt_contains(argv, "-chardev",
                             "socket,id=qmpdisp,path=/run/atrium/vms/42/qmp-display.sock,server=on"));
    assert_true(opt_contains(argv, "-mon", "chardev=qmpdisp,mode=control"));
    assert_false(opt_contains(argv, "-spice", "disable-ticketing"));
    assert_true(
        opt_contains(argv, "-chardev", "file,id=serial0,path=/run/atrium/vms/42/serial.log"));
    assert_string_equal(value_of(argv, "-serial"), "chardev:serial0");
    assert_string_equal(value_of(argv, "-pidfile"), "/run/atrium/vms/42/qemu.pid");
    hv_argv_free(argv);
}

static void test_inherited_qmp_socket_is_passed_by_fd(void **state)
{
    (void)state;
    struct hv_vm_def def = base_def();
    char **argv = NULL;
    assert_int_equal(hv_qemu_argv_new(&def, &paths, "qemu", 7, &argv), 0);
    assert_true(opt_contains(argv, "-chardev", "socket,id=qmp,fd=7,server=on,wait=off"));
    assert_false(opt_contains(argv, "-chardev", "qmp.sock"));
    hv_argv_free(argv);
}

static void test_machine_devices_and_sandbox(void **state)
{
    (void)state;
    struct hv_vm_def def = base_def();
    char **argv = build(&def);
    assert_string_equal(value_of(argv, "-name"), "guest=desk-1,debug-threads=on");
    assert_string_equal(value_of(argv, "-machine"), "q35");
    assert_string_equal(value_of(argv, "-m"), "512");
    assert_string_equal(value_of(argv, "-smp"), "2");
    assert_string_equal(value_of(argv, "-vga"), "qxl");
    assert_true(has_arg(argv, "-nodefaults"));
    assert_true(
        opt_contains(argv, "-blockdev", "driver=file,filename=/var/lib/atrium/overlays/42.qcow2"));
    assert_true(opt_contains(argv, "-blockdev", "driver=qcow2"));
    assert_true(opt_contains(argv, "-device", "virtio-blk-pci,drive=disk0"));
    assert_string_equal(value_of(argv, "-netdev"), "user,id=net0");
    assert_true(opt_contains(argv, "-device", "virtio-net-pci,netdev=net0"));
    assert_true(opt_contains(argv, "-device", "name=com.redhat.spice.0"));
    assert_true(opt_contains(argv, "-chardev", "spicevmc,id=vdagent,name=vdagent"));
    assert_true(opt_contains(argv, "-chardev", "spicevmc,id=usbredir0,name=usbredir"));
    assert_true(opt_contains(argv, "-chardev", "spicevmc,id=usbredir1,name=usbredir"));
    assert_true(opt_contains(argv, "-device", "usb-redir,chardev=usbredir1"));
    assert_string_equal(value_of(argv, "-audiodev"), "spice,id=audio0");
    assert_true(opt_contains(argv, "-device", "hda-duplex,audiodev=audio0"));
    assert_true(opt_contains(argv, "-device", "virtio-balloon-pci"));
    assert_true(opt_contains(argv, "-sandbox", "on,"));
    assert_true(opt_contains(argv, "-sandbox", "spawn=deny"));
    assert_string_equal(value_of(argv, "-accel"), "tcg,thread=multi");
    assert_false(has_arg(argv, "-S"));
    assert_false(has_arg(argv, "-kernel"));
    assert_false(has_arg(argv, "-daemonize")); /* hostd keeps QEMU's stderr */
    hv_argv_free(argv);
}

static void test_kvm_uses_host_cpu(void **state)
{
    (void)state;
    struct hv_vm_def def = base_def();
    def.accel = HV_ACCEL_KVM;
    def.start_paused = true;
    char **argv = build(&def);
    assert_string_equal(value_of(argv, "-accel"), "kvm");
    assert_string_equal(value_of(argv, "-cpu"), "host");
    assert_true(has_arg(argv, "-S"));
    hv_argv_free(argv);
}

static void test_kernel_boot_and_bridge_and_mac(void **state)
{
    (void)state;
    struct hv_vm_def def = base_def();
    def.boot = HV_BOOT_KERNEL;
    def.kernel = "/g/vmlinuz";
    def.initrd = "/g/initrd.img";
    def.cmdline = "console=ttyS0 quiet";
    def.nic = HV_NIC_BRIDGE;
    def.bridge = "vmbr0";
    def.tap = "atr7n0";
    def.mac = "52:54:00:12:34:56";
    char **argv = build(&def);
    assert_string_equal(value_of(argv, "-kernel"), "/g/vmlinuz");
    assert_string_equal(value_of(argv, "-initrd"), "/g/initrd.img");
    assert_string_equal(value_of(argv, "-append"), "console=ttyS0 quiet");
    assert_string_equal(value_of(argv, "-netdev"),
                        "tap,id=net0,ifname=atr7n0,script=no,downscript=no");
    assert_true(opt_contains(argv, "-device", "mac=52:54:00:12:34:56"));
    /* hostd made the tap: QEMU spawns nothing, bridged or not. */
    assert_true(opt_contains(argv, "-sandbox", "spawn=deny"));
    hv_argv_free(argv);

    /* A bridged NIC needs its tap; a tap name cannot smuggle options. */
    char **sentinel = (char **)&paths;
    const char *bad_taps[] = {NULL, "", "atr7n0,script=/bin/sh", "a-name-longer-than-15"};
    for (size_t i = 0; i < sizeof(bad_taps) / sizeof(bad_taps[0]); i++) {
        def.nic = HV_NIC_BRIDGE;
        def.tap = bad_taps[i];
        argv = sentinel;
        assert_int_equal(hv_qemu_argv_new(&def, &paths, "qemu", -1, &argv), -EINVAL);
        assert_ptr_equal(argv, sentinel);
    }

    def.nic = HV_NIC_NONE;
    argv = build(&def);
    assert_false(has_arg(argv, "-netdev"));
    hv_argv_free(argv);
}

static void test_commas_in_paths_cannot_inject_options(void **state)
{
    (void)state;
    struct hv_vm_def def = base_def();
    def.disk_path = "/data/a,file.locking=off,b.qcow2";
    char **argv = build(&def);
    assert_true(opt_contains(argv, "-blockdev",
                             "filename=/data/a,,file.locking=off,,b.qcow2,node-name=disk0-file"));
    hv_argv_free(argv);
}

static void test_bad_definitions_are_refused_and_output_untouched(void **state)
{
    (void)state;
    char **sentinel = (char **)&paths;
    struct hv_vm_def bad[9];
    for (size_t i = 0; i < 9; i++)
        bad[i] = base_def();
    bad[0].name = "";
    bad[1].name = "-rm";
    bad[2].name = "a b";
    bad[3].vcpus = 0;
    bad[4].memory_mb = 32;
    bad[5].boot = HV_BOOT_KERNEL; /* without a kernel */
    bad[6].nic = HV_NIC_BRIDGE;
    bad[6].bridge = "br0,helper=/bin/sh";
    bad[6].tap = "atr1n0";
    bad[7].mac = "52:54:00:12:34";
    bad[8].disk_path = NULL; /* disk boot without a disk */
    for (size_t i = 0; i < 9; i++) {
        char **argv = sentinel;
        assert_int_equal(hv_qemu_argv_new(&bad[i], &paths, "qemu", -1, &argv), -EINVAL);
        assert_ptr_equal(argv, sentinel);
    }
    struct hv_vm_def ok = base_def();
    char **argv = sentinel;
    assert_int_equal(hv_qemu_argv_new(&ok, &paths, "", -1, &argv), -EINVAL);
    assert_ptr_equal(argv, sentinel);
}

static void test_runtime_paths_are_bounded_by_sun_path(void **state)
{
    (void)state;
    struct hv_vm_paths p;
    memset(&p, 0x5a, sizeof(p));
    char dir[200];
    memset(dir, 'd', sizeof(dir) - 1);
    dir[0] = '/';
    dir[sizeof(dir) - 1] = '\0';
    assert_int_equal(hv_vm_paths_init(dir, 1, &p), -ENAMETOOLONG);
    assert_int_equal((unsigned char)p.qmp[0], 0x5a);
    assert_int_equal(hv_vm_paths_init("/run/atrium", 7, &p), 0);
    assert_string_equal(p.dir, "/run/atrium/vms/7");
    assert_string_equal(p.qmp, "/run/atrium/vms/7/qmp.sock");
    assert_string_equal(p.qemu_log, "/run/atrium/vms/7/qemu.log");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_command_line_has_no_tcp_listener, setup),
        cmocka_unit_test_setup(test_incoming_migration_listens_only_when_asked, setup),
        cmocka_unit_test_setup(test_consoles_and_monitor_live_in_the_vm_runtime_dir, setup),
        cmocka_unit_test_setup(test_inherited_qmp_socket_is_passed_by_fd, setup),
        cmocka_unit_test_setup(test_machine_devices_and_sandbox, setup),
        cmocka_unit_test_setup(test_kvm_uses_host_cpu, setup),
        cmocka_unit_test_setup(test_kernel_boot_and_bridge_and_mac, setup),
        cmocka_unit_test_setup(test_commas_in_paths_cannot_inject_options, setup),
        cmocka_unit_test_setup(
            test_instant_template_and_clone_differ_only_in_ram_sharing_and_incoming, setup),
        cmocka_unit_test_setup(test_bad_definitions_are_refused_and_output_untouched, setup),
        cmocka_unit_test(test_runtime_paths_are_bounded_by_sun_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
